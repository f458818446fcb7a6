"""The duty-officer page end to end in headless Chromium (Debian's /usr/bin/chromium via Playwright).

Real server (uvicorn on 127.0.0.1), real frames and detector people in the snapshots, real alerts
recorded the way the service records them; the browser logs in with the token like an officer.
"""

from __future__ import annotations

import re

import pytest

from gateway.delivery.ledger import CaseUpdate
from waiting import PATIENCE_S
from web_support import TOKEN, browser, serve, wait_until  # noqa: F401  (fixture; page polling)

PATIENCE_MS = PATIENCE_S * 1000


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    with serve(tmp_path_factory.mktemp("web")) as served:
        served.alerts.start("market", "crowd", 72, severity=2, ago_s=300)
        yield served


@pytest.fixture
def page(browser, site):  # noqa: F811  (browser: the shared fixture)
    context = browser.new_context(viewport={"width": 1400, "height": 900}, locale="zh-CN")
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.goto(f"{site.url}/?token={TOKEN}")  # kiosk link: traded for the session cookie
    assert "token=" not in page.url
    page.wait_for_selector('#live[data-state="open"]', timeout=PATIENCE_MS)
    yield page
    context.close()
    assert not errors, errors


def test_new_alert_appears_live_and_acknowledge_works(page, site):
    wait_until(page, "() => document.querySelectorAll('.alert').length === 1")
    assert page.locator("#gw-name").inner_text() == site.view.gateway_name
    page.fill("#officer", "值班员甲")
    page.locator("#officer").dispatch_event("change")

    _, message = site.alerts.start("gate", "gathering", 120, severity=3)
    card = page.locator(f'[data-id="{message.event_id}"]')
    card.wait_for(timeout=PATIENCE_MS)  # pushed over the event stream: the page is never reloaded

    assert page.locator(".alert").first.get_attribute("data-id") == message.event_id  # newest on top
    assert card.locator(".title").inner_text() == message.payload["title_zh"]
    assert card.locator(".chip.type").inner_text() == "人员聚集"
    assert card.locator(".chip.state").inner_text() == "进行中"
    place = card.locator(".place").inner_text()
    assert "东门广场" in place and "DM-03" in place and "东门街道人民路 18 号广场" in place
    assert str(message.payload["count"]) in card.locator(".count").inner_text()
    assert re.search(r"\d\d:\d\d:\d\d", card.locator(".time").inner_text())
    wait_until(page, "id => { const img = document.querySelector(`[data-id='${id}'] .thumb img`);"
               " return img && img.complete && img.naturalWidth > 0; }", message.event_id)
    wait_until(page, "() => document.querySelector('#badge-unacked').textContent === '2'")

    card.locator(".ack-btn").click()
    assert page.locator("#ack-name").input_value() == "值班员甲"  # the header's name, remembered
    page.click("#ack-send")
    card.locator(".acked").wait_for(timeout=PATIENCE_MS)
    record = site.ledger.ack_for(message.event_id)  # the ack went through the case ledger
    assert record is not None and record.by == "值班员甲"
    assert "已确认" in card.locator(".acked").inner_text() and "值班员甲" in card.locator(".acked").inner_text()
    assert card.locator(".ack-btn").is_hidden()
    wait_until(page, "() => document.querySelector('#badge-unacked').textContent === '1'")


def test_updates_and_acks_from_elsewhere_reach_the_page(page, site):
    live, message = site.alerts.start("gate", "intrusion", 240, severity=4)
    card = page.locator(f'[data-id="{message.event_id}"]')
    card.wait_for(timeout=PATIENCE_MS)
    site.alerts.end(live)
    wait_until(page, "id => document.querySelector(`[data-id='${id}'] .chip.state`).textContent === '已结束'",
               message.event_id)
    site.ledger.record_centre_ack(message.event_id, "C-2024-0815", "指挥中心")  # the centre, over MQTT
    card.locator(".acked").wait_for(timeout=PATIENCE_MS)
    assert "C-2024-0815" in card.locator(".acked").inner_text()


def test_the_centres_case_status_is_shown_on_the_alert_as_text(page, site):
    _, message = site.alerts.start("market", "crowd", 96, severity=2)
    card = page.locator(f'[data-id="{message.event_id}"]')
    card.wait_for(timeout=PATIENCE_MS)
    assert card.locator(".case-status").is_hidden()  # no case yet
    note = '<img src=x onerror="window.pwned=1">请网格员到场'
    site.ledger.record_case(CaseUpdate(message.event_id, "GD-2024-0042", "accepted", "综治中心",
                                       "2024-05-01T09:31:00+08:00", 1714527060.0, note))  # what the MQTT output stores
    line = card.locator(".case-status")
    line.wait_for(state="visible", timeout=PATIENCE_MS)  # pushed over the event stream
    text = line.inner_text()
    assert "工单状态" in text and "已接单" in text and "GD-2024-0042" in text and "综治中心" in text
    assert line.locator(".case-note").inner_text() == note  # the centre's text, shown as text
    assert line.locator("img").count() == 0 and not page.evaluate("() => window.pwned === 1")
    page.click("#lang")
    wait_until(page, "id => document.querySelector(`[data-id='${id}'] .case-state`).textContent === 'Accepted'",
               message.event_id)
    page.click("#lang")


def test_english_switch(page):
    assert page.locator("#tab-alerts").inner_text().startswith("告警")
    page.click("#lang")
    assert page.locator("#tab-alerts").inner_text().startswith("Alerts")
    assert page.locator(".alert .chip.type").first.inner_text() in {"Gathering", "Crowd limit", "Intrusion"}
    assert page.locator("html").get_attribute("lang") == "en"
    page.reload()
    page.wait_for_selector(".alert")
    assert page.locator("#tab-cameras").inner_text().startswith("Cameras")  # remembered
    page.click("#lang")
    assert page.locator("#tab-cameras").inner_text().startswith("摄像机")


def test_camera_wall(page):
    page.click("#tab-cameras")
    page.wait_for_selector("#wall .cam >> nth=2")
    assert page.locator("#wall .cam").count() == 3
    gate = page.locator('[data-camera="gate"]')
    north = page.locator('[data-camera="north"]')
    assert "在线" in gate.locator(".pill").inner_text() and "重连中" in north.locator(".pill").inner_text()
    assert north.locator(".noframe").is_visible() and "rtsp://admin:***@" in north.locator(".cam-error").inner_text()
    wait_until(page, "() => { const img = document.querySelector('[data-camera=gate] .screen img');"
               " return img && !img.hidden && img.naturalWidth === 768; }")
    first = gate.locator(".screen img").get_attribute("src")
    wait_until(page, "first => document.querySelector('[data-camera=gate] .screen img').src !== first",
               first)  # the picture refreshes by itself


def test_installer_draws_a_zone_and_prints_yaml(page):
    page.click("#tab-installer")
    wait_until(page, "() => { const img = document.querySelector('#inst-img');"
               " return img && !img.hidden && img.naturalWidth > 0; }")
    assert page.locator("#inst-camera").input_value() == "gate"
    box = page.locator("#inst-img").bounding_box()
    for fx, fy in [(0.25, 0.25), (0.75, 0.25), (0.75, 0.75), (0.25, 0.75), (0.5, 0.9)]:
        page.mouse.click(box["x"] + box["width"] * fx, box["y"] + box["height"] * fy)
    page.click("#inst-undo")
    page.fill("#inst-id", "north-square")
    page.fill("#inst-name", "北广场")
    yaml = page.locator("#inst-yaml").inner_text()
    assert "  - id: north-square" in yaml and 'name: "北广场"' in yaml
    points = [tuple(map(int, p)) for p in re.findall(r"\[(\d+), (\d+)\]", yaml.split("polygon:")[1])]
    assert len(points) == 4
    expected = [(192, 144), (576, 144), (576, 432), (192, 432)]  # 768x576 frame pixels
    assert all(abs(x - ex) <= 3 and abs(y - ey) <= 3 for (x, y), (ex, ey) in zip(points, expected, strict=True)), points
    assert page.locator("#inst-svg circle").count() == 4 and page.locator("#inst-svg .zone").count() == 1
    assert page.locator("#inst-copy").is_enabled()

    page.fill("#inst-id", "bad id/../")
    assert page.locator("#inst-error").is_visible() and page.locator("#inst-copy").is_disabled()

    page.select_option("#inst-camera", "market")  # a camera whose YAML uses normalised coordinates
    box = page.locator("#inst-img").bounding_box()
    for fx, fy in [(0.1, 0.5), (0.5, 0.1), (0.9, 0.5)]:
        page.mouse.click(box["x"] + box["width"] * fx, box["y"] + box["height"] * fy)
    polygon = page.locator("#inst-yaml").inner_text().split("polygon:")[1]
    values = [float(v) for v in re.findall(r"[\d.]+", polygon)]
    assert len(values) == 6 and all(0 <= v <= 1 for v in values) and abs(values[0] - 0.1) < 0.01


def test_login_form_in_the_browser(browser, site):  # noqa: F811  (browser: the shared fixture)
    context = browser.new_context()
    page = context.new_page()
    page.goto(site.url + "/")
    assert page.url.endswith("/login")
    page.fill("#token", "wrong")
    page.click("button[type=submit]")
    assert "令牌不正确" in page.locator(".err").inner_text()
    page.fill("#token", TOKEN)
    page.click("button[type=submit]")
    page.wait_for_selector(".alert", timeout=PATIENCE_MS)
    cookies = {c["name"]: c for c in context.cookies()}
    assert cookies["gw_session"]["httpOnly"] and cookies["gw_session"]["value"] != TOKEN
    assert page.evaluate("document.cookie") == ""  # invisible to scripts
    context.close()


def test_kiosk_link_warns_that_the_token_is_in_the_browser_history(browser, site):  # noqa: F811  (browser: the shared fixture)
    context = browser.new_context(locale="zh-CN")
    page = context.new_page()
    page.goto(f"{site.url}/?token={TOKEN}")
    page.wait_for_selector("#toast:not([hidden])", timeout=PATIENCE_MS)
    assert "历史记录" in page.locator("#toast").inner_text()
    assert page.url == f"{site.url}/"  # neither the token nor the notice stays in the address bar
    context.close()


def test_the_type_filter_lists_the_gateways_alert_vocabulary(page):
    from gateway.events.types import ALERT_TYPES

    wait_until(page, "n => document.querySelectorAll('#f-type option').length === n", len(ALERT_TYPES) + 1)
    labels = page.locator("#f-type option").all_inner_texts()[1:]
    assert labels == [kind.title_zh for kind in ALERT_TYPES.values()]
