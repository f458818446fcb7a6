"""`gateway discover`: WS-Discovery probe, resolve every device, print a `cameras:` stanza.

Registered by `gateway/cli.py` with `add_discover_parser(commands)`.  Importing this module is
cheap: the ONVIF library is loaded only when the command runs.
"""

from __future__ import annotations

import argparse
import os
import sys

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def add_discover_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "discover", help="find ONVIF cameras and print a cameras: stanza for the YAML",
        description="Send a WS-Discovery probe, ask every device that answers for its model, media "
                    "profiles and stream URI, and print a ready-to-paste `cameras:` stanza. "
                    "Passwords are never printed: the stanza refers to ${CAM_PASSWORD} (see "
                    "--password-env). Devices that refuse the credentials are listed with the reason.")
    parser.add_argument("--timeout", type=float, default=3.0, metavar="S",
                        help="seconds to wait for probe answers (default 3)")
    parser.add_argument("--resolve-timeout", type=float, default=10.0, metavar="S",
                        help="seconds allowed to resolve each device (default 10)")
    parser.add_argument("--user", default=None,
                        help="ONVIF user for every device (default: $CAM_USER, else admin)")
    parser.add_argument("--password-env", default="CAM_PASSWORD", metavar="NAME",
                        help="environment variable holding the password (default CAM_PASSWORD); "
                             "the stanza says ${NAME}")
    parser.add_argument("--interface", default=None, metavar="IF",
                        help="send the probe from this interface (name such as eth0, or its IPv4 address)")
    parser.add_argument("--address", default="239.255.255.250:3702", metavar="HOST[:PORT]",
                        help="where to send the probe (default the WS-Discovery multicast group "
                             "239.255.255.250:3702; a unicast address probes one device)")
    parser.set_defaults(handler=cmd_discover)
    return parser


def cmd_discover(args: argparse.Namespace) -> int:
    from gateway.onvif.discovery import discover, format_cameras_yaml, ipv4_interfaces, no_answer_hint, parse_target

    if not (0 < args.timeout <= 60) or not (0 < args.resolve_timeout <= 120):
        print("gateway discover: --timeout must be in (0, 60] and --resolve-timeout in (0, 120]",
              file=sys.stderr)
        return EXIT_USAGE
    try:
        target = parse_target(args.address)
    except ValueError as error:
        print(f"gateway discover: {error}", file=sys.stderr)
        return EXIT_USAGE
    env_name = args.password_env
    if not env_name or not env_name.replace("_", "a").isalnum() or env_name[0].isdigit():
        print(f"gateway discover: --password-env {env_name!r} is not a variable name", file=sys.stderr)
        return EXIT_USAGE
    user = args.user if args.user is not None else os.environ.get("CAM_USER", "admin")
    password = os.environ.get(env_name, "")
    if not password:
        print(f"gateway discover: ${env_name} is not set; devices will be asked without a password",
              file=sys.stderr)
    try:
        results = discover(args.timeout, target, args.interface, user, password, args.resolve_timeout)
    except (OSError, ValueError) as error:
        print(f"gateway discover: cannot probe {args.address}: {error}", file=sys.stderr)
        return EXIT_FAILED
    if not results:
        print(f"# gateway discover: no ONVIF device answered on {target[0]}:{target[1]} "
              f"within {args.timeout:g} s")
        hint = no_answer_hint(ipv4_interfaces(), args.interface, target)
        if hint:
            print(f"gateway discover: {hint}", file=sys.stderr)
        return EXIT_FAILED
    note = f" on {target[0]}:{target[1]} within {args.timeout:g} s"
    sys.stdout.write(format_cameras_yaml(results, user=user, password_env=env_name, probe_note=note))
    if all(result.camera is None for result in results):
        refused = sum(result.refused for result in results)
        print(f"gateway discover: none of the {len(results)} devices could be read"
              + (f" ({refused} refused the credentials: check --user and ${env_name})" if refused else ""),
              file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK
