"""Camera events: notification parsing, and the PullPoint listener against the fake device."""

from __future__ import annotations

import logging
import queue
import threading
import time
from datetime import datetime, timezone

import pytest
from lxml import etree

import gateway.onvif.events as events_module
from gateway.config.models import OnvifSettings
from gateway.onvif.events import (
    CameraEvent,
    ListenerStatus,
    OnvifEventListener,
    cancels_all_on_unsubscribe,
    normalize_topic,
    parse_notification,
)
from gateway.onvif.session import OnvifLoop
from onvif_device import FakeOnvifDevice, FaultSpec, notification_xml
from waiting import wait_until

NOW = datetime(2024, 5, 1, 8, 0, tzinfo=timezone.utc)
WSNT = "http://docs.oasis-open.org/wsn/b-2"


class Holder:
    """A NotificationMessage as zeep gives it: Topic._value_1 and Message._value_1 (lxml here)."""

    def __init__(self, xml: str):
        root = etree.fromstring(
            f'<r xmlns:wsnt="{WSNT}" xmlns:tt="http://www.onvif.org/ver10/schema">{xml}</r>')[0]
        topic = root.find(f"{{{WSNT}}}Topic")
        self.Topic = type("Topic", (), {"_value_1": topic.text, "Dialect": topic.get("Dialect")})()
        self.Message = type("Message", (), {"_value_1": root.find(f"{{{WSNT}}}Message")[0]})()


def message(topic: str, data: dict, source: dict | None = None, operation: str = "Changed") -> Holder:
    return Holder(notification_xml(topic, data, source or {}, operation, NOW))


@pytest.mark.parametrize("topic, data, kind, active, reason", [
    ("tns1:VideoSource/GlobalSceneChange/ImagingService", {"State": "true"}, "tamper", True, "scene_change"),
    ("tns1:VideoSource/GlobalSceneChange/AnalyticsService", {"State": "false"}, "tamper", False, "scene_change"),
    ("tns1:RuleEngine/TamperDetector/Tamper", {"IsTamper": "true"}, "tamper", True, "tamper"),
    ("tns1:VideoSource/ImageTooDark/ImagingService", {"State": "1"}, "tamper", True, "too_dark"),
    ("tns1:VideoSource/ImageTooBlurry/AnalyticsService", {"State": "true"}, "tamper", True, "too_blurry"),
    ("tns1:VideoSource/SignalLoss", {"State": "true"}, "tamper", True, "signal_loss"),
    ("tns1:RuleEngine/CellMotionDetector/Motion", {"IsMotion": "true"}, "motion", True, None),
    ("tns1:VideoSource/MotionAlarm", {"State": "false"}, "motion", False, None),
    ("tns1:Device/Trigger/DigitalInput", {"LogicalState": "true"}, "digital_input", True, None),
])
def test_topics_become_camera_events(topic, data, kind, active, reason):
    event = parse_notification("cam1", message(topic, data, {"VideoSourceToken": "VS1", "InputToken": "DI_2"}))
    assert isinstance(event, CameraEvent)
    assert (event.camera_id, event.kind, event.active, event.source_topic) == ("cam1", kind, active, topic)
    assert event.data.get("reason") == reason
    assert event.at == NOW and event.data["operation"] == "Changed"
    assert event.data["items"] == data
    if kind == "digital_input":
        assert event.data["input"] == "DI_2"


def test_topic_variants_and_unknown_topics():
    assert normalize_topic("tns1:RuleEngine/CellMotionDetector/Motion//.") == "RuleEngine/CellMotionDetector/Motion"
    assert normalize_topic("ns2:Device/ns2:Trigger/DigitalInput/") == "Device/Trigger/DigitalInput"
    event = parse_notification("c", message("onvif:RuleEngine/CellMotionDetector/Motion//.", {"IsMotion": "false"}))
    assert event.kind == "motion" and not event.active
    assert parse_notification("c", message("tns1:Monitoring/ProcessorUsage", {"Value": "12"})) is None


def test_deleted_property_ends_the_state_and_initialized_is_marked():
    deleted = parse_notification("c", message("tns1:VideoSource/MotionAlarm", {"State": "true"}, operation="Deleted"))
    assert deleted.active is False
    initial = parse_notification("c", message("tns1:VideoSource/MotionAlarm", {"State": "true"},
                                              operation="Initialized"))
    assert initial.initial and initial.active


def test_unreadable_state_of_a_known_topic_is_an_error():
    with pytest.raises(ValueError, match="no readable state"):
        parse_notification("c", message("tns1:RuleEngine/CellMotionDetector/Motion", {"IsMotion": "maybe"}))


def test_single_boolean_item_with_an_unusual_name_is_read():
    event = parse_notification("c", message("tns1:Device/Trigger/DigitalInput", {"Level": "high"}))
    assert event.active


# --------------------------------------------------------------------------- listener


class Collector:
    def __init__(self):
        self.events: queue.Queue[CameraEvent] = queue.Queue()
        self.statuses: list[ListenerStatus] = []
        self.lock = threading.Lock()

    def on_event(self, event: CameraEvent) -> None:
        self.events.put(event)

    def on_status(self, camera_id: str, status: ListenerStatus) -> None:
        with self.lock:
            self.statuses.append(status)

    def next(self, timeout: float = 30.0) -> CameraEvent:
        return self.events.get(timeout=timeout)

    def wait_state(self, state: str, timeout: float = 30.0, after: int = 0) -> ListenerStatus:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                for status in self.statuses[after:]:
                    if status.state == state:
                        return status
            time.sleep(0.02)
        raise AssertionError(f"no {state!r} status; got {[s.state for s in self.statuses]}")


@pytest.fixture(autouse=True)
def forget_cancel_all_cameras():
    """The 'cancels all on Unsubscribe' knowledge is per host:port for the process: keep tests apart."""
    yield
    events_module._CANCELS_ALL.clear()


@pytest.fixture(scope="module")
def loop():
    with OnvifLoop("test-onvif") as shared:
        yield shared


def listener_for(device: FakeOnvifDevice, loop: OnvifLoop, collector: Collector, password: str = "Secret-1",
                 **options) -> OnvifEventListener:
    options = {"subscription_s": 60, "pull_timeout_s": 1, "timeout": 2, "retry_min_s": 0.1,
               "retry_max_s": 0.5, **options}
    return OnvifEventListener(
        "gate", OnvifSettings(host=device.host, port=device.port, user="admin", password=password),
        collector.on_event, loop=loop, on_status=collector.on_status, **options)


def test_events_flow_and_unsubscribe_on_stop(loop):
    collector = Collector()
    with FakeOnvifDevice() as device:
        listener = listener_for(device, loop, collector)
        listener.start()
        collector.wait_state("subscribed")
        device.push_event("tns1:VideoSource/GlobalSceneChange/ImagingService", {"State": "true"},
                          {"Source": "VideoSource_1"})
        tamper = collector.next()
        assert (tamper.kind, tamper.active, tamper.data["reason"]) == ("tamper", True, "scene_change")
        device.push_event("tns1:RuleEngine/CellMotionDetector/Motion", {"IsMotion": "true"},
                          {"VideoSourceConfigurationToken": "VSC_1", "Rule": "Motion1"})
        device.push_event("tns1:RuleEngine/CellMotionDetector/Motion", {"IsMotion": "true"},
                          {"VideoSourceConfigurationToken": "VSC_1", "Rule": "Motion1"})  # repeat: dropped
        device.push_event("tns1:Device/Trigger/DigitalInput", {"LogicalState": "true"}, {"InputToken": "DI_1"})
        device.push_event("tns1:Monitoring/ProcessorUsage", {"Value": "20"})  # not ours: ignored
        assert [(e.kind, e.active) for e in (collector.next(), collector.next())] == [
            ("motion", True), ("digital_input", True)]
        assert listener.status.state == "subscribed" and listener.status.events == 3
        listener.stop()
        assert listener.status.state == "stopped"
        assert device.stats["unsubscribed"] == 1 and device.live_subscriptions() == 0
        assert device.stats["created"] == 1
    assert collector.events.empty()


def test_short_grants_are_renewed_before_expiry(loop):
    collector = Collector()
    with FakeOnvifDevice(max_termination_s=3) as device:
        listener = listener_for(device, loop, collector)
        listener.start()
        collector.wait_state("subscribed")
        # the switch to absolute times, then one renewal at 80 % of a 3 s grant
        wait_until(lambda: device.stats["renewed"] >= 2, what="two renewals")
        device.push_event("tns1:VideoSource/MotionAlarm", {"State": "true"}, {"Source": "VS1"})
        assert collector.next().kind == "motion"
        listener.stop()
        assert device.stats["renewed"] >= 2  # the absolute-time switch plus renewals at 80 %
        assert device.stats["created"] == 1, "the subscription never lapsed"
        assert listener.status.errors == 0


def test_camera_reboot_resubscribes_and_resyncs_states(loop, caplog):
    caplog.set_level(logging.INFO, logger="gateway.onvif.events")
    collector = Collector()
    with FakeOnvifDevice() as device:
        listener = listener_for(device, loop, collector)
        listener.start()
        collector.wait_state("subscribed")
        device.push_event("tns1:VideoSource/GlobalSceneChange/ImagingService", {"State": "true"},
                          {"Source": "VideoSource_1"})
        assert collector.next().active
        count = len(collector.statuses)
        device.reboot(downtime_s=0.7)
        collector.wait_state("retrying", after=count)
        collector.wait_state("subscribed", after=count)
        # SetSynchronizationPoint re-sent the current (cleared) tamper state: the open tamper ends
        ended = collector.next()
        assert (ended.kind, ended.active, ended.initial) == ("tamper", False, True)
        # Whether this lands in the subscription the listener keeps or in one it is replacing,
        # the state arrives: the next synchronisation point re-sends it.
        device.push_event("tns1:Device/Trigger/DigitalInput", {"LogicalState": "true"}, {"InputToken": "DI_1"})
        assert collector.next().kind == "digital_input"
        listener.stop()
        assert device.stats["created"] >= 2
    assert "gate: camera events subscribed again" in caplog.text  # the operator hears it is back


def test_wrong_password_keeps_retrying_without_crashing(loop):
    collector = Collector()
    with FakeOnvifDevice() as device:
        listener = listener_for(device, loop, collector, password="not-it-123")
        listener.start()
        status = collector.wait_state("retrying")
        assert "not authorized" in status.detail and "not-it-123" not in status.detail
        listener.stop()
        assert listener.status.state == "stopped"


def test_a_password_fixed_on_the_camera_is_picked_up_with_backoff_not_after_a_fixed_minute(loop, caplog):
    """After a refused password the listener used to wait retry_max_s (60 s) every time: a password
    being changed on the camera cost a minute of alarms. It backs off like every ONVIF retry."""
    caplog.set_level(logging.DEBUG, logger="gateway.onvif.events")
    collector = Collector()
    with FakeOnvifDevice(refuse_credentials=True) as device:
        listener = listener_for(device, loop, collector, retry_min_s=0.1, retry_max_s=60)
        listener.start()
        wait_until(lambda: device.auth_failures >= 3, what="three refused attempts (not one a minute)")
        device.refuse_credentials = False  # the password on the camera is the configured one again
        collector.wait_state("subscribed")
        listener.stop()
    refused = [r for r in caplog.records if "camera events: 127.0.0.1" in r.getMessage()]
    assert refused[0].levelno == logging.WARNING and all(r.levelno == logging.DEBUG for r in refused[1:])
    assert "; asking with the configured user and password again in " in refused[0].getMessage()
    assert "(then backing off up to 60 s; no camera alarms until then)" in refused[0].getMessage()
    assert "gate: camera events subscribed again (after: " in caplog.text and "Secret-1" not in caplog.text


def test_camera_without_pullpoint_support_backs_off(loop):
    collector = Collector()
    fault = FaultSpec("env:Receiver", "ter:ActionNotSupported", "PullPoint not supported")
    with FakeOnvifDevice(faults={"CreatePullPointSubscription": fault}) as device:
        listener = listener_for(device, loop, collector)
        listener.start()
        attempts = lambda: [at for name, at in device.call_times if name == "CreatePullPointSubscription"]  # noqa: E731
        wait_until(lambda: len(attempts()) >= 4, what="four subscription attempts")
        listener.stop()
        times = attempts()
    gaps = [later - earlier for earlier, later in zip(times, times[1:])]
    # retried with backoff (0.1 s, 0.2 s, ... up to 0.5 s, each minus up to 25 % jitter), not in a tight loop
    assert all(gap >= 0.07 for gap in gaps[:3]) and sum(gaps[:3]) >= 0.5, gaps
    assert listener.status.errors >= 2


def test_let_expire_never_unsubscribes(loop):
    collector = Collector()
    with FakeOnvifDevice() as device:
        listener = listener_for(device, loop, collector, let_expire=True)
        listener.start()
        collector.wait_state("subscribed")
        listener.stop()
        assert device.stats["unsubscribed"] == 0 and device.live_subscriptions() == 1


def test_camera_that_cancels_all_subscriptions_is_detected_and_left_to_expire(loop):
    collector = Collector()
    with FakeOnvifDevice(cancel_all_on_unsubscribe=True) as device:
        endpoint = f"127.0.0.1:{device.port}"
        listener = listener_for(device, loop, collector, timeout=1)
        listener.start()
        collector.wait_state("subscribed")
        # One pull hangs past the client's timeout: the listener replaces the subscription
        # (new one first, then Unsubscribe of the old) and the camera drops both.
        device.delays["PullMessages"] = 2.3
        collector.wait_state("retrying")
        del device.delays["PullMessages"]
        wait_until(lambda: cancels_all_on_unsubscribe(endpoint) and listener.status.state == "subscribed",
                   what="the camera recognised as cancelling all, and subscribed again")
        device.push_event("tns1:VideoSource/MotionAlarm", {"State": "true"}, {"Source": "VS1"})
        assert collector.next().kind == "motion"
        unsubscribed = device.stats["unsubscribed"]
        listener.stop()
        assert device.stats["unsubscribed"] == unsubscribed, "no Unsubscribe once the camera is known"
        assert device.live_subscriptions() == 1


def test_stop_interrupts_a_long_poll_quickly(loop):
    collector = Collector()
    with FakeOnvifDevice() as device:
        listener = listener_for(device, loop, collector, pull_timeout_s=120)
        listener.start()
        collector.wait_state("subscribed")
        wait_until(lambda: device.stats["pulls"] >= 1, what="a long poll in progress")
        started = time.monotonic()
        listener.stop()
        assert time.monotonic() - started < 60  # far less than the 120 s poll it interrupted
        assert device.stats["unsubscribed"] == 1
