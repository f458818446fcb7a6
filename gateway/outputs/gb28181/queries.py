"""The answers to a platform's MANSCDP queries and controls. Pure.

`answer` reads one parsed MESSAGE body (`manscdp.Command`) and says what to send back: Response
bodies at once (Catalog, DeviceInfo, DeviceStatus, ConfigDownload, and RecordInfo/PresetQuery
when there is nothing to ask a camera), or a `CameraJob` for what only a camera (or the clip
store) can answer - its presets, a PTZ move, its recordings - which the transport runs off the
SIP thread; `job_answer` then turns the job's result into the Response.

Why every query gets a Response: a platform waits for it (WVP 15 s for RecordInfo and
PresetQuery, then reports an error to the operator), so "not here" is an empty list, not
silence. PTZ control has no Response in the standard (A.3) when it works; a refused one gets
`Result ERROR` so the operator learns why at once, and the log says it too.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from gateway.outputs.gb28181 import manscdp
from gateway.outputs.gb28181.actions import CameraJob, DeviceSettings
from gateway.outputs.gb28181.manscdp import Channel
from gateway.outputs.gb28181.ptzcmd import PtzCmdError, decode
from gateway.status import PresetInfo, RecordClip

_NUMBER_AT_END = re.compile(r"(\d+)\s*$")


@dataclass(frozen=True)
class DeviceFacts:
    """What the answers report about the device now (gathered by the device for each query)."""

    settings: DeviceSettings
    channels: Sequence[Channel]
    local_time: str
    recording: bool = False
    alarming: frozenset[str] = frozenset()
    """Channel ids with an alarm raised and not yet ended."""
    can_control: bool = False
    """A CameraControl is wired: PTZ and presets can be asked of the cameras."""
    has_records: bool = False
    """A RecordSource is wired: recordings can be listed."""


@dataclass(frozen=True)
class Reply:
    """What to do about one query: send `bodies` now, or run `job`; `note` is for the log."""

    bodies: list[bytes] = field(default_factory=list)
    job: CameraJob | None = None
    note: str = ""
    supported: bool = True


def answer(command: manscdp.Command, facts: DeviceFacts, job_id: int) -> Reply:
    """The reply to one Query or Control (see the module docstring)."""
    device = facts.settings.device_id
    key = (command.root, command.cmd_type)
    if key == ("Query", "Catalog"):
        return Reply(manscdp.catalog_responses(device, command.sn, list(facts.channels)))
    if key == ("Query", "DeviceInfo"):
        settings = facts.settings
        return Reply([manscdp.device_info_response(
            device, command.sn, name=settings.name, manufacturer=settings.manufacturer, model=settings.model,
            firmware=settings.firmware, channels=len(facts.channels))])
    if key == ("Query", "DeviceStatus"):
        inputs = [(c.channel_id, c.channel_id in facts.alarming) for c in facts.channels if c.camera_id is None]
        return Reply([manscdp.device_status_response(device, command.sn, facts.local_time,
                                                     recording=facts.recording, alarm_inputs=inputs)])
    if key == ("Query", "ConfigDownload"):
        return _config_download(command, facts)
    if key == ("Query", "RecordInfo"):
        return _record_info(command, facts, job_id)
    if key == ("Query", "PresetQuery"):
        return _preset_query(command, facts, job_id)
    if key == ("Control", "DeviceControl"):
        return _device_control(command, facts, job_id)
    return Reply(supported=False, note=f"{command.root} {command.cmd_type} is not supported")


def job_answer(job: CameraJob, result: object, error: str | None) -> Reply:
    """The Response for a finished job (`result` as the job's call returned it)."""
    if job.kind == "ptz":
        if error is None:
            return Reply(note=f"PTZ {_describe(job)} on camera {job.camera_id} done")
        return Reply([manscdp.result_response("DeviceControl", job.channel_id, job.sn, ok=False)],
                     note=f"PTZ {_describe(job)} on camera {job.camera_id} refused: {error}")
    if job.kind == "presets":
        presets = result if error is None and isinstance(result, list) else []
        numbered = numbered_presets([p for p in presets if isinstance(p, PresetInfo)])
        note = f"{len(numbered)} preset(s) of camera {job.camera_id}" if error is None else \
            f"no presets of camera {job.camera_id}: {error}"
        return Reply([manscdp.preset_query_response(job.channel_id, job.sn, numbered)], note=note)
    clips = result if error is None and isinstance(result, list) else []
    records = [clip for clip in clips if isinstance(clip, RecordClip)]
    note = f"{len(records)} recording(s) of camera {job.camera_id}" if error is None else \
        f"no recordings of camera {job.camera_id}: {error}"
    return Reply(manscdp.record_info_responses(job.channel_id, job.sn, job.name, records), note=note)


def numbered_presets(presets: Sequence[PresetInfo]) -> list[tuple[int, str]]:
    """(number, name) of the presets a platform can call: GB/T 28181 calls presets by number
    1-255, so a preset is listed under its token when that is a number (Hikvision, Dahua),
    else under the number its token or name ends in; presets with neither are left out."""
    numbered: dict[int, str] = {}
    for preset in presets:
        number = _number(preset.token) if preset.token.isdecimal() else (
            _number(preset.token) or _number(preset.name))
        if number is not None and 1 <= number <= 255 and number not in numbered:
            numbered[number] = preset.name or str(number)
    return sorted(numbered.items())


# --------------------------------------------------------------------------- the answers


def _config_download(command: manscdp.Command, facts: DeviceFacts) -> Reply:
    settings = facts.settings
    wanted = {part.strip() for part in command.fields.get("ConfigType", "").split("/")}
    if "BasicParam" not in wanted:
        return Reply([manscdp.result_response("ConfigDownload", settings.device_id, command.sn, ok=False)],
                     note=f"ConfigDownload of {'/'.join(sorted(wanted))}: only BasicParam is kept")
    return Reply([manscdp.config_download_response(
        settings.device_id, command.sn, name=settings.name, expiration=settings.expires_s,
        heartbeat_interval=max(1, round(settings.keepalive_s)), heartbeat_count=settings.max_missed_keepalives)])


def _record_info(command: manscdp.Command, facts: DeviceFacts, job_id: int) -> Reply:
    channel = _channel(facts, command.device_id)
    name = channel.name if channel else ""
    if channel is None or channel.camera_id is None or not facts.has_records:
        why = "no such channel" if channel is None else "no camera on the channel" \
            if channel.camera_id is None else "no recordings are kept yet"
        return Reply(manscdp.record_info_responses(command.device_id, command.sn, name, []),
                     note=f"RecordInfo of {command.device_id}: an empty list ({why})")
    return Reply(job=CameraJob(job_id, "records", channel.camera_id, channel.channel_id, command.sn,
                               start=command.fields.get("StartTime", ""), end=command.fields.get("EndTime", ""),
                               name=name))


def _preset_query(command: manscdp.Command, facts: DeviceFacts, job_id: int) -> Reply:
    channel = _channel(facts, command.device_id)
    if channel is None or channel.camera_id is None or not facts.can_control:
        why = "no such channel" if channel is None else "no camera on the channel" \
            if channel.camera_id is None else "camera control is not available"
        return Reply([manscdp.preset_query_response(command.device_id, command.sn, [])],
                     note=f"PresetQuery of {command.device_id}: an empty list ({why})")
    return Reply(job=CameraJob(job_id, "presets", channel.camera_id, channel.channel_id, command.sn))


def _device_control(command: manscdp.Command, facts: DeviceFacts, job_id: int) -> Reply:
    target = command.device_id

    def refuse(why: str) -> Reply:
        return Reply([manscdp.result_response("DeviceControl", target, command.sn, ok=False)],
                     note=f"DeviceControl of {target} refused: {why}")

    if "PTZCmd" not in command.fields:
        asked = ", ".join(sorted(set(command.fields) - {"CmdType", "SN", "DeviceID", "Info"})) or "nothing"
        return refuse(f"only PTZCmd is carried out (asked: {asked})")
    try:
        ptz = decode(command.fields["PTZCmd"])
    except PtzCmdError as error:
        return refuse(str(error))
    channel = _channel(facts, target)
    if channel is None or channel.camera_id is None:
        return refuse("no such channel" if channel is None else "the channel is an alarm input, not a camera")
    if not facts.can_control:
        return refuse(f"camera {channel.camera_id}: camera control is not available on this gateway")
    return Reply(job=CameraJob(job_id, "ptz", channel.camera_id, channel.channel_id, command.sn, command=ptz))


def _channel(facts: DeviceFacts, channel_id: str) -> Channel | None:
    return next((channel for channel in facts.channels if channel.channel_id == channel_id), None)


def _number(text: str) -> int | None:
    match = _NUMBER_AT_END.search(text)
    return int(match.group(1)) if match else None


def _describe(job: CameraJob) -> str:
    command = job.command
    if command is None:
        return job.kind
    if command.action == "move":
        return f"move (pan {command.pan:+.2f}, tilt {command.tilt:+.2f}, zoom {command.zoom:+.2f})"
    return f"{command.action} preset {command.preset}" if command.preset else command.action
