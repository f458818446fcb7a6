"""`gateway check` behaviour: every malformed file names the exact file, line and key path.

Each test writes a small YAML file into a scratch directory (the working directory during the
test, so issues name `site.yaml`, `cams/east.yaml`, ...) and asserts (file, line, path) exactly.
Line numbers are visible in the dedented YAML strings: the first line of each string is line 1.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from gateway.config import ConfigError, ConfigIssue, check_config, load_config, summary
from gateway.config.errors import Redactor
from gateway.config.models import CrowdRule, FileSource, NvrSource, OnvifSource, RtspSource
from gateway.redaction import redact
from waiting import PATIENCE_S

REPO = Path(__file__).resolve().parent.parent
MODEL = REPO.parent / "shared" / "models" / "yolox_nano.onnx"
EXAMPLE_ENV = {
    "CAM_PASSWORD": "cam-Pa55",
    "NVR_PASSWORD": "nvr-Pa55",
    "MQTT_PASSWORD": "mqtt-Pa55",
    "API_TOKEN": "api-T0ken",
    "WEBHOOK_SECRET": "hook-S3cret",
    "WEBHOOK_TOKEN": "hook-T0ken",
    "GB28181_PASSWORD": "gb-Pa55",
    "MARKET_MQTT_PASSWORD": "market-Pa55",
}

# Lines 1-4 of most test files; the camera under test starts at line 5.
HEAD = f"""\
gateway:
  id: gw1
detector:
  model: {MODEL}
"""


@pytest.fixture(autouse=True)
def _in_scratch_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def write(name: str, text: str) -> str:
    path = Path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return name


def issues_of(text: str, env: dict[str, str] | None = None) -> list[ConfigIssue]:
    config, issues = check_config(write("site.yaml", text), env=env or {})
    assert (config is None) == bool(issues)
    return issues


def where(issues: list[ConfigIssue]) -> list[tuple[str, int, str]]:
    return [(issue.file, issue.line, issue.path) for issue in issues]


def single(text: str, env: dict[str, str] | None = None) -> ConfigIssue:
    issues = issues_of(text, env)
    assert len(issues) == 1, "\n".join(map(str, issues))
    return issues[0]


def camera(body: str) -> str:
    """HEAD plus `cameras:` (line 5) and one camera whose first key is on line 6."""
    return HEAD + "cameras:\n" + textwrap.indent(textwrap.dedent(body), "  ")


# --------------------------------------------------------------------------- malformed files


def test_typo_key_names_the_line_and_suggests_the_valid_key():
    issue = single(HEAD + "  confidense: 0.4\n")
    assert where([issue]) == [("site.yaml", 5, "detector.confidense")]
    assert issue.message == "unknown key 'confidense', did you mean 'confidence'?"


def test_typo_key_inside_a_rule_suggests_from_that_rule_type():
    issue = single(camera("""\
        - id: cam1
          source: {rtsp: "rtsp://10.0.0.1/live"}
          rules:
            - type: crowd
              min_peple: 5
        """))
    assert where([issue]) == [("site.yaml", 10, "cameras[0].rules[0].min_peple")]
    assert "did you mean 'min_people'?" in issue.message


def test_wrong_type():
    issue = single(camera("""\
        - id: cam1
          source: {rtsp: "rtsp://10.0.0.1/live"}
          fps: fast
        """))
    assert where([issue]) == [("site.yaml", 8, "cameras[0].fps")]
    assert issue.message == "must be a number"


def test_out_of_range_confidence():
    issue = single(HEAD + "  confidence: 1.5\n")
    assert str(issue) == "site.yaml:5: detector.confidence: must be less than 1"


def test_polygon_with_two_points():
    issue = single(camera("""\
        - id: cam1
          source: {rtsp: "rtsp://10.0.0.1/live"}
          resolution: [768, 576]
          zones:
            - id: plaza
              polygon: [[0, 0], [100, 100]]
        """))
    assert str(issue) == "site.yaml:11: cameras[0].zones[0].polygon: need at least 3 points, got 2"


def test_polygon_point_outside_the_frame_points_at_the_point():
    issue = single(camera("""\
        - id: cam1
          source: {rtsp: "rtsp://10.0.0.1/live"}
          resolution: [768, 576]
          zones:
            - id: plaza
              polygon:
                - [0, 0]
                - [700, 0]
                - [800, 500]
        """))
    assert where([issue]) == [("site.yaml", 14, "cameras[0].zones[0].polygon[2]")]
    assert issue.message == "point [800, 500] lies outside the frame 768x576"


def test_pixel_polygon_without_resolution():
    issue = single(camera("""\
        - id: cam1
          source: {rtsp: "rtsp://10.0.0.1/live"}
          masks:
            - polygon: [[0, 0], [10, 0], [10, 10]]
        """))
    assert where([issue]) == [("site.yaml", 9, "cameras[0].masks[0].polygon")]
    assert "need the camera's resolution" in issue.message


def test_duplicate_camera_id_is_reported_alongside_other_errors():
    issues = issues_of(camera("""\
        - id: cam1
          source: {rtsp: "rtsp://10.0.0.1/live"}
          fps: 0
        - id: cam1
          source: {rtsp: "rtsp://10.0.0.2/live"}
        """))
    assert where(issues) == [("site.yaml", 8, "cameras[0].fps"), ("site.yaml", 9, "cameras[1].id")]
    assert issues[1].message == "duplicate id 'cam1' (first used at cameras[0])"


def test_duplicate_zone_id():
    issue = single(camera("""\
        - id: cam1
          source: {rtsp: "rtsp://10.0.0.1/live"}
          coordinates: normalized
          zones:
            - {id: plaza, polygon: [[0, 0], [1, 0], [1, 1]]}
            - {id: plaza, polygon: [[0, 0], [0.5, 0], [0.5, 0.5]]}
        """))
    assert where([issue]) == [("site.yaml", 11, "cameras[0].zones[1].id")]
    assert "duplicate id 'plaza'" in issue.message


def test_rule_pointing_at_an_unknown_zone():
    issue = single(camera("""\
        - id: cam1
          source: {rtsp: "rtsp://10.0.0.1/live"}
          coordinates: normalized
          zones:
            - {id: plaza, polygon: [[0, 0], [1, 0], [1, 1]]}
          rules:
            - type: crowd
              zone: plzaa
              min_people: 5
        """))
    assert str(issue) == "site.yaml:13: cameras[0].rules[0].zone: unknown zone 'plzaa' (known: plaza)"


def test_density_rule_without_calibration():
    issue = single(camera("""\
        - id: cam1
          source: {rtsp: "rtsp://10.0.0.1/live"}
          rules:
            - type: crowd
              min_density_per_m2: 2.5
        """))
    assert where([issue]) == [("site.yaml", 10, "cameras[0].rules[0].min_density_per_m2")]
    assert "calibration" in issue.message


def test_counting_section_defaults_and_mistakes():
    config, issues = check_config(write("site.yaml", camera("""\
        - id: cam1
          source: {rtsp: "rtsp://10.0.0.1/live"}
        """)), env={})
    assert not issues and config.cameras[0].counting.mode == "detector" and config.cameras[0].counting.model is None
    issues = issues_of(camera("""\
        - id: cam1
          source: {rtsp: "rtsp://10.0.0.1/live"}
          counting:
            mode: dense
            modle: m.json
            person_height_px: [0, 120]
        """))
    assert where(issues) == [("site.yaml", 9, "cameras[0].counting.mode"),
                             ("site.yaml", 10, "cameras[0].counting.modle"),
                             ("site.yaml", 11, "cameras[0].counting.person_height_px")]
    assert issues[1].message == "unknown key 'modle', did you mean 'mode'?"
    assert "heights must be positive" in issues[2].message


def test_bad_schedule_window_points_at_the_item():
    issue = single(camera("""\
        - id: cam1
          source: {rtsp: "rtsp://10.0.0.1/live"}
          rules:
            - type: intrusion
              schedule:
                - "22:00-06:00"
                - "25:00-06:00"
        """))
    assert where([issue]) == [("site.yaml", 12, "cameras[0].rules[0].schedule[1]")]
    assert "25:00-06:00" in issue.message


def test_unknown_rule_type():
    issue = single(camera("""\
        - id: cam1
          source: {rtsp: "rtsp://10.0.0.1/live"}
          rules:
            - type: loiter
              for_s: 60
        """))
    assert where([issue]) == [("site.yaml", 9, "cameras[0].rules[0].type")]
    assert "unknown type 'loiter', did you mean 'loitering'?" in issue.message


def test_rule_without_type():
    issue = single(camera("""\
        - id: cam1
          source: {rtsp: "rtsp://10.0.0.1/live"}
          rules:
            - min_people: 5
        """))
    assert where([issue]) == [("site.yaml", 9, "cameras[0].rules[0]")]
    assert issue.message == "needs a 'type' key: one of crowd, gathering, growth, loitering, intrusion"


def test_unset_env_var_is_reported_and_secret_values_never_leak():
    secret = "Sup3r-S3cret.42"
    text = camera("""\
        - id: ${CAM_PASSWORD}
          source:
            rtsp: "rtsp://admin:${CAM_PASSWORD}@10.0.0.1/live"
            transport: carrier-pigeon
        - id: ${CAM_PASSWORD}
          source:
            onvif: {host: 10.0.0.2, password: "${CAM_PASSWORD}", port: 0}
        """) + "mqtt:\n  password: ${MQTT_PASSWORD}\n"
    issues = issues_of(text, env={"CAM_PASSWORD": secret})
    assert where(issues) == [
        ("site.yaml", 9, "cameras[0].source.transport"),
        ("site.yaml", 10, "cameras[1].id"),
        ("site.yaml", 12, "cameras[1].source.onvif.port"),
        ("site.yaml", 14, "mqtt.password"),
    ]
    assert issues[-1].message == "environment variable MQTT_PASSWORD is not set"
    assert issues[1].message == "duplicate id '***' (first used at cameras[0])"
    report = str(ConfigError(issues))
    assert secret not in report and "Sup3r" not in report


def test_redactor_masks_url_passwords_and_known_secrets():
    redactor = Redactor({"hunter22"})
    assert redactor("bad rtsp://admin:pa55@10.0.0.1/x") == "bad rtsp://admin:***@10.0.0.1/x"
    assert redactor("got 'hunter22'") == "got '***'"


def test_yaml_syntax_error():
    issue = single(HEAD + "cameras:\n  - id: cam1\n    source: {rtsp: x\n    fps: 2\n")
    assert (issue.file, issue.line, issue.path) == ("site.yaml", 8, "")
    assert issue.message.startswith("YAML syntax error:")
    assert "started at line 7" in issue.message


def test_tab_indentation_is_explained():
    issue = single("gateway:\n\tid: gw1\n")
    assert (issue.line, issue.message.endswith("(indent with spaces, not tabs)")) == (2, True)


def test_duplicate_yaml_key_does_not_echo_values():
    issue = single(HEAD + "mqtt:\n  password: first-Secret\n  password: second-Secret\n")
    assert (issue.file, issue.line) == ("site.yaml", 7)
    assert "duplicate key 'password'" in issue.message
    assert "Secret" not in str(issue)


def test_error_inside_an_included_file_names_that_file():
    write("cams/east.yaml", """\
        cameras:
          - id: east-gate
            source: {rtsp: "rtsp://10.0.0.9/live"}
            fps: -1
        """)
    issue = single(HEAD + "include: [cams/*.yaml]\ncameras:\n  - id: main\n    source: {file: x.avi}\n")
    assert str(issue) == "cams/east.yaml:4: cameras[1].fps: must be greater than 0"


def test_syntax_error_in_an_included_file_is_not_drowned_in_follow_on_errors():
    write("detector.yaml", "detector:\n  model: [x\n")
    issue = single("gateway: {id: gw1}\ninclude: detector.yaml\n")
    assert (issue.file, issue.line) == ("detector.yaml", 3)
    assert issue.message.startswith("YAML syntax error")


@pytest.mark.parametrize("included", [True, False])
def test_an_undefined_alias_is_named_by_its_line_not_its_name(included):
    """The name after `*` may be a secret's fragment typed in the wrong place: never echoed."""
    cameras = "cameras:\n  - id: cam1\n    source: {rtsp: *Hunter2-Fragment}\n"
    if included:
        write("cams.yaml", cameras)
        issue = single(HEAD + "include: cams.yaml\n")
        assert (issue.file, issue.line) == ("cams.yaml", 3)
    else:
        issue = single(HEAD + cameras)
        assert (issue.file, issue.line) == ("site.yaml", 7)
    assert issue.message.startswith("YAML syntax error: an undefined alias")
    assert "Hunter2" not in str(issue)


def test_include_cycle():
    write("b.yaml", "include: site.yaml\n")
    issue = single(HEAD + "include:\n  - b.yaml\n")
    assert where([issue]) == [("b.yaml", 1, "include")]
    assert issue.message == "include cycle: site.yaml -> b.yaml -> site.yaml"


def test_section_defined_in_two_files():
    write("more.yaml", "sensors: []\ndetector:\n  threads: 4\n")
    issue = single(HEAD + "include: more.yaml\n")
    assert where([issue]) == [("more.yaml", 2, "detector")]
    assert "already defined in site.yaml:3" in issue.message


def test_missing_include():
    issues = issues_of(HEAD + "include:\n  - cams/*.yaml\n  - other.yaml\n")
    assert where(issues) == [("site.yaml", 6, "include[0]"), ("site.yaml", 7, "include[1]")]
    assert issues[0].message == "matches no files: cams/*.yaml"
    assert issues[1].message == "included file not found: other.yaml"


def test_source_with_no_known_key():
    issue = single(camera("""\
        - id: cam1
          source:
            url: rtsp://10.0.0.1/live
        """))
    assert where([issue]) == [("site.yaml", 7, "cameras[0].source")]
    assert issue.message.startswith("source needs one of rtsp, nvr, onvif, file")


def test_source_branch_errors_are_not_multiplied():
    issues = issues_of(camera("""\
        - id: cam1
          source:
            nvr: hikvison
            channel: 3
        """))
    assert where(issues) == [("site.yaml", 7, "cameras[0].source.host"), ("site.yaml", 8, "cameras[0].source.nvr")]
    assert issues[0].message == "required key is missing"
    assert issues[1].message == "must be 'hikvision' or 'dahua'"


def test_bad_timezone():
    issue = single("gateway:\n  id: gw1\n  timezone: Asia/Beijing\n" + HEAD[HEAD.index("detector"):])
    assert where([issue]) == [("site.yaml", 3, "gateway.timezone")]
    assert "unknown time zone 'Asia/Beijing'" in issue.message


def test_calibration_with_mismatched_point_counts():
    issue = single(camera("""\
        - id: cam1
          source: {rtsp: "rtsp://10.0.0.1/live"}
          resolution: [768, 576]
          calibration:
            image_points: [[0, 0], [700, 0], [700, 500], [0, 500]]
            ground_points_m: [[0, 0], [10, 0], [10, 8], [0, 8], [5, 5]]
        """))
    assert where([issue]) == [("site.yaml", 11, "cameras[0].calibration.ground_points_m")]
    assert "must pair up" in issue.message


def test_errors_in_defaults_point_at_the_defaults_lines_once():
    issues = issues_of(HEAD + textwrap.dedent("""\
        defaults:
          fps: 0
          motion: {sensitivty: 0.5}
        cameras:
          - {id: cam1, source: {rtsp: "rtsp://10.0.0.1/a"}}
          - {id: cam2, source: {rtsp: "rtsp://10.0.0.1/b"}}
        """))
    assert where(issues) == [("site.yaml", 6, "defaults.fps"), ("site.yaml", 7, "defaults.motion.sensitivty")]
    assert issues[1].message == "unknown key 'sensitivty', did you mean 'sensitivity'?"


def test_many_errors_are_reported_at_once_in_line_order():
    issues = issues_of(textwrap.dedent(f"""\
        gateway:
          id: gw 1
        detector:
          model: {MODEL}
          threads: 0
        cameras:
          - id: cam1
            source: {{rtsp: "http://10.0.0.1/live"}}
            zones:
              - {{id: z, polygon: [[0, 0], [1, 1]]}}
        mqtt:
          port: 70000
          qos: 2
        api:
          tokn: abc
        """))
    assert where(issues) == [
        ("site.yaml", 2, "gateway.id"),
        ("site.yaml", 5, "detector.threads"),
        ("site.yaml", 8, "cameras[0].source.rtsp"),
        ("site.yaml", 10, "cameras[0].zones[0].polygon"),
        ("site.yaml", 12, "mqtt.port"),
        ("site.yaml", 13, "mqtt.qos"),
        ("site.yaml", 15, "api.tokn"),
    ]
    assert issues[0].message.startswith("not a valid id")
    assert issues[6].message == "unknown key 'tokn', did you mean 'token'?"


def test_missing_model_file_and_missing_section():
    issues = issues_of("gateway:\n  id: gw1\ndetector:\n  model: models/nope.onnx\n")
    assert where(issues) == [("site.yaml", 4, "detector.model")]
    assert issues[0].message == f"model file not found: {Path.cwd() / 'models' / 'nope.onnx'}"
    issue = single("gateway:\n  id: gw1\n")
    assert (issue.line, issue.path, issue.message) == (1, "detector", "required key is missing")


def test_top_level_not_a_mapping_and_empty_file():
    assert str(single("- gateway\n- detector\n")).startswith("site.yaml:1: the top level must be a map")
    assert str(single("# nothing yet\n")) == "site.yaml:1: the file is empty"
    assert str(check_config("absent.yaml")[1][0]) == "absent.yaml: file not found"


def test_load_config_raises_with_every_issue():
    write("site.yaml", "gateway: {id: gw1, timezone: Mars/Base}\ndetector: {model: nope.onnx}\n")
    with pytest.raises(ConfigError) as caught:
        load_config("site.yaml", env={})
    assert where(caught.value.issues) == [("site.yaml", 1, "gateway.timezone"), ("site.yaml", 2, "detector.model")]
    assert str(caught.value).count("\n") == 1


# --------------------------------------------------------------------------- valid files


def test_example_yaml_is_valid_with_its_env_vars():
    config, issues = check_config(REPO / "config" / "example.yaml", env=EXAMPLE_ENV)
    assert issues == []
    assert config is not None
    assert [type(camera.source) for camera in config.cameras] == [RtspSource, NvrSource, OnvifSource, FileSource]
    rules = [type(rule).__name__ for camera in config.cameras for rule in camera.rules]
    assert {"CrowdRule", "GatheringRule", "GrowthRule", "LoiteringRule", "IntrusionRule"} <= set(rules)
    nvr = config.cameras[1].source
    assert (nvr.vendor, nvr.channel, nvr.password.get_secret_value()) == ("hikvision", 3, "nvr-Pa55")
    assert config.cameras[1].motion.model_dump() == {"enabled": True, "sensitivity": 0.7, "max_skip_s": 10}
    assert config.mqtt.password.get_secret_value() == "mqtt-Pa55"
    assert config.detector.model == MODEL


def test_example_yaml_without_env_names_each_variable():
    _, issues = check_config(REPO / "config" / "example.yaml", env={})
    assert {issue.message.split()[2] for issue in issues} == set(EXAMPLE_ENV)


def test_demo_yaml_is_valid_without_env(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(REPO)
    config = load_config("config/demo.yaml", env={})
    assert summary(config, "config/demo.yaml") == "config/demo.yaml: OK — gateway demo-gw, 1 camera, 4 rules"
    demo = config.camera("demo")
    assert (demo.fps, demo.resolution, [zone.id for zone in demo.zones]) == (10, (768, 576), ["plaza"])
    assert demo.source.file == REPO.parent / "shared" / "data" / "vtest_h264.mp4"
    assert config.gateway.data_dir == REPO / "data"
    assert (config.mqtt.host, config.mqtt.port, config.api.bind, config.api.port) == ("127.0.0.1", 1883, "127.0.0.1", 8080)
    crowd = demo.rules[0]
    assert isinstance(crowd, CrowdRule) and crowd.min_people == 7 and crowd.rule_id == "crowd-frame"
    assert demo.decode == "all" and len(demo.masks) == 1


def test_defaults_are_merged_into_cameras_camera_keys_win():
    write("site.yaml", HEAD + textwrap.dedent("""\
        defaults:
          fps: 5
          resolution: [1280, 720]
          motion: {sensitivity: 0.9, max_skip_s: 10}
        cameras:
          - {id: a, source: {rtsp: "rtsp://h/a"}}
          - {id: b, source: {rtsp: "rtsp://h/b"}, fps: 1, motion: {enabled: false}}
        """))
    config = load_config("site.yaml", env={})
    a, b = config.cameras
    assert (a.fps, a.resolution, a.motion.sensitivity) == (5, (1280, 720), 0.9)
    assert (b.fps, b.resolution, b.motion.enabled, b.motion.sensitivity, b.motion.max_skip_s) == (1, (1280, 720), False, 0.9, 10)


def test_normalized_coordinates():
    write("site.yaml", camera("""\
        - id: cam1
          source: {nvr: dahua, host: 10.0.0.5, channel: 2}
          coordinates: normalized
          zones:
            - {id: z, polygon: [[0, 0], [1, 0], [0.5, 1]]}
        """))
    config = load_config("site.yaml", env={})
    assert config.cameras[0].zones[0].polygon == [(0, 0), (1, 0), (0.5, 1)]
    issue = single(camera("""\
        - id: cam1
          source: {nvr: dahua, host: 10.0.0.5}
          coordinates: normalized
          zones:
            - {id: z, polygon: [[0, 0], [1.2, 0], [0.5, 1]]}
        """))
    assert where([issue]) == [("site.yaml", 10, "cameras[0].zones[0].polygon[1]")]


def test_env_substitution_with_defaults_and_escapes():
    write("site.yaml", HEAD + textwrap.dedent("""\
        mqtt:
          host: ${MQTT_HOST:-127.0.0.1}
          port: ${MQTT_PORT:-1883}
          username: ${MQTT_USER:-gw}-$${literal}
          password: ${MQTT_PASSWORD}
        """))
    config = load_config("site.yaml", env={"MQTT_PORT": "8883", "MQTT_PASSWORD": "x"})
    assert (config.mqtt.host, config.mqtt.port, config.mqtt.username) == ("127.0.0.1", 8883, "gw-${literal}")
    assert config.mqtt.password.get_secret_value() == "x"


def test_includes_append_cameras_and_resolve_paths_per_file():
    write("cams/b.yaml", "cameras:\n  - {id: b, source: {file: b.avi}}\n")
    write("cams/a.yaml", "cameras:\n  - {id: a, source: {file: ../videos/a.avi}}\n")
    write("site.yaml", HEAD + "include: [cams/*.yaml, cams/a.yaml]\ncameras:\n  - {id: main, source: {file: m.avi}}\n")
    config = load_config("site.yaml", env={})
    assert [camera.id for camera in config.cameras] == ["main", "a", "b"]
    assert [camera.source.file for camera in config.cameras] == [
        Path.cwd() / "m.avi", Path.cwd() / "videos" / "a.avi", Path.cwd() / "cams" / "b.avi",
    ]


def test_yaml_anchors_under_x_keys_and_merge_keys_point_at_the_anchor():
    issue = single(HEAD + textwrap.dedent("""\
        x-hik: &hik
          source: {nvr: hikvision, host: 10.0.0.5}
          fps: 100
        cameras:
          - <<: *hik
            id: cam1
        """))
    assert where([issue]) == [("site.yaml", 7, "cameras[0].fps")]
    assert issue.message == "must be at most 60"


def test_issue_format():
    issue = ConfigIssue("config/site.yaml", 14, "cameras[2].zones[0].polygon", "need at least 3 points")
    assert str(issue) == "config/site.yaml:14: cameras[2].zones[0].polygon: need at least 3 points"


# --------------------------------------------------------------------------- hostile files


def test_a_number_of_thousands_of_digits_is_an_error_with_its_line():
    issue = single(HEAD + "storage:\n  outbox_max_mb: " + "9" * 5000 + "\n")
    assert (issue.file, issue.line) == ("site.yaml", 6) and "cannot be read" in issue.message
    assert "9999999999" not in str(issue)


def test_nesting_thousands_of_levels_deep_is_an_error_not_a_crash():
    issue = single(HEAD + "cameras: " + "[" * 3000 + "]" * 3000 + "\n")
    assert issue.file == "site.yaml" and issue.line == 5 and "nested" in issue.message
    issue = single(HEAD + "defaults: " + "[" * 60 + "1" + "]" * 60 + "\n")  # readable, but absurd
    assert "nested more than 40 levels" in issue.message


def test_an_alias_bomb_is_refused_before_it_is_expanded():
    bomb = "gateway: {id: gw1}\nx-a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
    for level in "bcdefghi":
        previous = chr(ord(level) - 1)
        bomb += f"x-{level}: &{level} [" + ", ".join([f"*{previous}"] * 10) + "]\n"
    bomb += "cameras: *i\n"   # 10^9 values if expanded
    assert len(bomb.encode()) < 1000
    issue = single(bomb)
    assert "more than 100,000 values" in issue.message and "alias" in issue.message


def test_huge_files_and_pipes_are_refused_without_reading_them(tmp_path: Path):
    huge = Path("huge.yaml")
    with huge.open("wb") as handle:
        handle.truncate(60 * 1024 * 1024)  # sparse: 60 MB that take no disk
    issue = single_file("huge.yaml")
    assert "60.0 MB" in issue.message and issue.line == 0
    os.mkfifo("pipe.yaml")
    # In a child process: a regression would block on the pipe forever, not hang the suite.
    result = subprocess.run([sys.executable, "-m", "gateway", "check", "-c", "pipe.yaml"], capture_output=True,
                            text=True, timeout=PATIENCE_S, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 2 and "not a regular file" in result.stderr


def test_binary_garbage_names_the_line_of_the_bad_character():
    Path("garbage.yaml").write_bytes(b"gateway:\n  id: gw1\n  name: ok\x00\x01\x02\n")
    issue = single_file("garbage.yaml")
    assert issue.line == 3 and "#x0000" in issue.message and "binary" in issue.message


def test_including_a_file_that_is_not_configuration_never_echoes_it():
    write("shadow", "root: $6$secret-hash\ndaemon: '*'\nbin: '*'\nsys: '*'\n")
    issues = issues_of(HEAD + "include: [shadow]\n")
    text = "\n".join(map(str, issues))
    assert len(issues) == 1 and "not a gateway configuration file: 4 of its 4 top-level keys" in text
    assert "root" not in text and "secret-hash" not in text and "daemon" not in text


@pytest.mark.parametrize("key, value", [
    ("name", '"东门\\n# evil: true"'),
    ("grid_id", '"G1\\rG2"'),
])
def test_line_breaks_in_names_are_refused(key: str, value: str):
    issue = single(camera(f"""\
        - id: cam1
          {key}: {value}
          source: {{file: cam.mp4}}
        """))
    assert where([issue]) == [("site.yaml", 7, f"cameras[0].{key}")] and "one line" in issue.message


def test_line_breaks_in_hosts_and_secrets_are_refused_without_echoing_them():
    issues = issues_of(camera("""\
        - id: cam1
          source: {onvif: {host: "10.0.0.7\\nevil", user: admin, password: "${CAM_PASSWORD}"}}
        """), env={"CAM_PASSWORD": "line-one\nline-two"})
    assert {issue.path for issue in issues} == {"cameras[0].source.onvif.host", "cameras[0].source.onvif.password"}
    assert all("one line" in issue.message for issue in issues)
    assert "line-one" not in "\n".join(map(str, issues))


# --------------------------------------------------------------------------- what run would refuse


def test_an_open_api_beyond_loopback_is_an_error_at_check():
    issue = single(HEAD + "api:\n  bind: 0.0.0.0\n")
    assert where([issue]) == [("site.yaml", 5, "api")] and "api.token is not set" in issue.message


def test_a_short_api_token_is_a_warning_at_check(tmp_path: Path):
    write("site.yaml", HEAD + "api:\n  bind: 0.0.0.0\n  token: ${API_TOKEN}\n")
    result = subprocess.run([sys.executable, "-m", "gateway", "check", "-c", "site.yaml"], capture_output=True,
                            text=True, timeout=PATIENCE_S, cwd=tmp_path,
                            env={**os.environ, "API_TOKEN": "short-tok", "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr
    assert "warning: api.token is only 9 characters" in result.stderr and "short-tok" not in result.stderr


def test_a_data_dir_that_cannot_be_a_directory_is_an_error_at_check():
    write("blocker", "a file, not a directory\n")
    issue = single(HEAD.replace("  id: gw1\n", "  id: gw1\n  data_dir: blocker/data\n"))
    assert where([issue]) == [("site.yaml", 3, "gateway.data_dir")] and "is not a directory" in issue.message


# --------------------------------------------------------------------------- secrets


def test_secrets_from_the_environment_are_masked_everywhere_after_loading():
    config, issues = check_config(write("site.yaml", camera("""\
        - id: cam1
          source: {rtsp: "rtsp://cam.local/live?channel=1&pwd=${CAM_KEY}"}
        - id: cam2
          source: {rtsp: "rtsp://admin:${CAM2}@10.0.0.9:554/${STREAM_PATH}"}
        """)), env={"CAM_KEY": "q7-Query-Secret", "CAM2": "pa/ss word", "STREAM_PATH": "h264"})
    assert config is not None, issues
    assert redact("opening rtsp://cam.local/live?channel=1&pwd=q7-Query-Secret failed") == \
        "opening rtsp://cam.local/live?channel=1&pwd=*** failed"
    assert "q7-Query-Secret" not in redact("camera said: bad key q7-Query-Secret")  # the value alone too
    assert redact("rtsp://admin:pa/ss word@10.0.0.9:554/h264") == "rtsp://admin:***@10.0.0.9:554/h264"
    assert "pa%2Fss%20word" not in redact("url rtsp://x/?u=admin&p=pa%2Fss%20word")  # encoded form too
    assert redact("rtsp://cam.local/live?pwd=abc&token=xyz&channel=2") == \
        "rtsp://cam.local/live?pwd=***&token=***&channel=2"
    assert redact("host 10.0.0.9 path h264") == "host 10.0.0.9 path h264"  # hosts stay readable


def single_file(name: str) -> ConfigIssue:
    config, issues = check_config(name, env={})
    assert config is None and len(issues) == 1, "\n".join(map(str, issues))
    return issues[0]
