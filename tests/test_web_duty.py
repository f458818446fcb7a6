"""What a duty officer and an installer ran into on the page, each fixed and proven in headless
Chromium (Debian's /usr/bin/chromium via Playwright) on a laptop (1366x768) or a phone (390x844).

Real server (uvicorn on 127.0.0.1), a busy evening's 52 real alerts (real frames, the real
detector's people, real evidence JPEGs) recorded the way the service records them, the real
case ledger for acks and the centre's case steps, and the real counting tool (no frame analysed
yet: its status is what an installer sees while the camera starts).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import pytest

from gateway.calibration.live import LiveCounting
from gateway.calibration.studio import CountingStudio
from gateway.delivery.ledger import CaseUpdate
from waiting import PATIENCE_S
from web_support import CAMERAS, FRAME_INDEXES, TOKEN, TZ, browser, serve, wait_until  # noqa: F401  (fixture)

PATIENCE_MS = PATIENCE_S * 1000
LAPTOP = {"width": 1366, "height": 768}
PHONE = {"width": 390, "height": 844}
ALERTS = 52


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("duty")
    lives = {camera.id: LiveCounting(camera, data_dir) for camera in CAMERAS}
    with serve(data_dir, counting_studio=CountingStudio(data_dir, lives.get)) as served:
        for n in range(ALERTS):  # most ended long ago and nobody acknowledged them; a few still run
            camera, kind = ("gate", "gathering") if n % 2 else ("market", "crowd")
            live, message = served.alerts.start(camera, kind, FRAME_INDEXES[n % len(FRAME_INDEXES)],
                                                severity=2 + n % 3, ago_s=3600 - n * 60)
            if n < ALERTS - 4:
                served.alerts.end(live)
            if n in (3, 17):
                served.ledger.record_centre_ack(message.event_id, f"C-{n}", "指挥中心")
        yield served


def open_page(browser, site, viewport=LAPTOP, storage=None):  # noqa: F811  (browser: the shared fixture)
    """A logged-in page (kiosk link) with its console watched; `storage`: localStorage to start with."""
    context = browser.new_context(viewport=viewport, locale="zh-CN", is_mobile=viewport is PHONE,
                                  has_touch=viewport is PHONE)
    if storage:
        script = "".join(f"localStorage.setItem({k!r}, {v!r});" for k, v in storage.items())
        context.add_init_script(script)
    page = context.new_page()
    page.errors = []
    page.on("pageerror", lambda exc: page.errors.append(str(exc)))
    page.on("console", lambda msg: page.errors.append(msg.text) if msg.type == "error" else None)
    page.goto(f"{site.url}/?token={TOKEN}")
    page.wait_for_selector('#live[data-state="open"]', timeout=PATIENCE_MS)
    page.wait_for_selector(".alert", timeout=PATIENCE_MS)
    return page


def close(page):
    errors = page.errors
    page.context.close()
    assert not errors, errors


def pending(site) -> int:
    return site.history.list(acked=False, limit=1).total


def card_of(page, event_id):
    return page.locator(f'[data-id="{event_id}"]')


# --------------------------------------------------------------------------- 1. pending = unacknowledged


def test_pending_and_the_tab_badge_count_every_unacknowledged_alert(browser, site):  # noqa: F811  (browser: the shared fixture)
    page = open_page(browser, site)
    expected = pending(site)
    assert expected == ALERTS - 2 and site.history.list(state="active", acked=False, limit=1).total == 4
    wait_until(page, "n => document.querySelector('#stat-unacked').textContent === String(n)"
                     " && document.querySelector('#badge-unacked').textContent === String(n)", expected)
    assert page.title().startswith(f"({expected}) ")

    _, message = site.alerts.start("gate", "intrusion", 240, severity=4)  # a new alert on the stream
    wait_until(page, "n => document.querySelector('#badge-unacked').textContent === String(n)", expected + 1)
    ended = site.history.list(state="end", acked=False, limit=1).items[0]
    site.ledger.record_centre_ack(ended.event_id, "C-2024-0901", "指挥中心")  # an ack from the centre
    site.ledger.record_centre_ack(message.event_id, "C-2024-0902", "指挥中心")
    wait_until(page, "n => document.querySelector('#stat-unacked').textContent === String(n)"
                     " && document.querySelector('#badge-unacked').textContent === String(n)", expected - 1)
    assert pending(site) == expected - 1
    close(page)


# --------------------------------------------------------------------------- 2. acknowledging


def test_acknowledging_asks_the_name_once_and_carries_a_case_number_and_a_note(browser, site):  # noqa: F811  (browser: the shared fixture)
    page = open_page(browser, site, PHONE)
    first = site.history.list(acked=False, limit=2).items
    card = card_of(page, first[0].event_id)
    card.locator(".ack-btn").click()
    dialog = page.locator("#ack-dialog")
    dialog.wait_for(state="visible", timeout=PATIENCE_MS)
    box = dialog.bounding_box()  # all of it on the phone's screen
    assert box["x"] >= 0 and box["y"] >= 0 and box["x"] + box["width"] <= 390 and box["y"] + box["height"] <= 844
    assert page.locator("#ack-name").input_value() == ""
    assert first[0].title_zh in page.locator("#ack-what").inner_text()  # which alert is being acknowledged
    page.click("#ack-send")
    assert dialog.is_visible() and site.ledger.ack_for(first[0].event_id) is None  # no name: nothing sent
    page.fill("#ack-name", "值班员乙")
    page.fill("#ack-case", "GD-2024-0100")
    page.fill("#ack-note", "已通知网格员\n<b>到场处置</b>")
    page.click("#ack-send")
    card.locator(".acked").wait_for(timeout=PATIENCE_MS)  # the stream may show it before the POST returns
    dialog.wait_for(state="hidden", timeout=PATIENCE_MS)  # ... and the form closes when the POST returns
    record = site.ledger.ack_for(first[0].event_id)
    assert (record.by, record.case_id, record.note) == ("值班员乙", "GD-2024-0100", "已通知网格员\n<b>到场处置</b>")
    shown = card.locator(".acked").inner_text()
    assert "值班员乙" in shown and "GD-2024-0100" in shown and "到场处置" in shown
    assert card.locator(".acked b").count() == 0  # the note is text

    page.reload()  # the name is remembered in this browser: the next ack only needs a click
    page.wait_for_selector(".alert", timeout=PATIENCE_MS)
    card = card_of(page, first[1].event_id)
    card.locator(".ack-btn").click()
    dialog.wait_for(state="visible", timeout=PATIENCE_MS)
    assert page.locator("#ack-name").input_value() == "值班员乙"
    page.fill("#ack-name", "值班员丙")  # and it can be changed
    page.click("#ack-send")
    card.locator(".acked").wait_for(timeout=PATIENCE_MS)
    dialog.wait_for(state="hidden", timeout=PATIENCE_MS)  # the name is remembered when the POST returns
    record = site.ledger.ack_for(first[1].event_id)
    assert (record.by, record.case_id, record.note) == ("值班员丙", "", None)
    assert page.evaluate("() => localStorage.getItem('gw.officer')") == "值班员丙"

    third = site.history.list(acked=False, limit=1).items[0]  # 取消 sends nothing
    card_of(page, third.event_id).locator(".ack-btn").click()
    dialog.wait_for(state="visible", timeout=PATIENCE_MS)
    page.click("#ack-cancel")
    assert dialog.is_hidden() and site.ledger.ack_for(third.event_id) is None
    close(page)


# --------------------------------------------------------------------------- 3. the case's steps


def test_the_case_timeline_shows_every_step_in_time_order_as_text(browser, site):  # noqa: F811  (browser: the shared fixture)
    target = site.history.list(state="end", acked=False, limit=1).items[0]
    start = datetime(2024, 5, 1, 9, 30, tzinfo=TZ)
    steps = [("dispatched", "综治中心", "派网格员张三"), ("accepted", "张三", None),
             ("handled", "张三", '<img src=x onerror="window.pwned=1">人群已疏散')]
    for minutes, (status, by, note) in enumerate(steps):
        at = start + timedelta(minutes=10 * minutes)
        site.ledger.record_case(CaseUpdate(target.event_id, "GD-2024-0042", status, by, at.isoformat(),
                                           at.timestamp(), note))
    page = open_page(browser, site)
    card = card_of(page, target.event_id)
    wait_until(page, "id => document.querySelector(`[data-id='${id}'] .case-state`)?.textContent === '已办结'",
               target.event_id)
    assert card.locator(".case-steps").is_hidden()
    card.locator(".case-toggle").click()
    wait_until(page, "id => document.querySelectorAll(`[data-id='${id}'] .case-steps li`).length === 3",
               target.event_id)
    items = card.locator(".case-steps li").all_inner_texts()
    assert ["已派单" in items[0], "已接单" in items[1], "已办结" in items[2]] == [True, True, True], items
    assert "09:30" in items[0] and "派网格员张三" in items[0] and "09:50" in items[2]
    assert card.locator(".case-steps .step-note").last.inner_text() == steps[2][2]
    assert card.locator(".case-steps img").count() == 0 and not page.evaluate("() => window.pwned === 1")

    at = start + timedelta(minutes=40)  # the centre verifies while the timeline is open
    site.ledger.record_case(CaseUpdate(target.event_id, "GD-2024-0042", "verified", "综治中心", at.isoformat(),
                                       at.timestamp(), "回访满意"))
    wait_until(page, "id => document.querySelectorAll(`[data-id='${id}'] .case-steps li`).length === 4",
               target.event_id)
    assert "已验收" in card.locator(".case-steps li").last.inner_text()
    page.click("#lang")
    wait_until(page, "id => document.querySelector(`[data-id='${id}'] .case-steps li`).textContent"
                     ".includes('Dispatched')", target.event_id)
    card.locator(".case-toggle").click()
    assert card.locator(".case-steps").is_hidden()
    page.click("#lang")
    close(page)


# --------------------------------------------------------------------------- 4. the list's weight


def test_the_list_loads_thumbnails_and_the_lightbox_the_full_picture(browser, site):  # noqa: F811  (browser: the shared fixture)
    context = browser.new_context(viewport=LAPTOP, locale="zh-CN")
    page = context.new_page()
    pictures, everything = [], []
    page.on("requestfinished", lambda request: everything.append(request))
    page.on("requestfinished", lambda request: pictures.append(request) if "/api/events/" in request.url
            and "/snapshot.jpg" in request.url else None)
    page.goto(f"{site.url}/?token={TOKEN}")
    page.wait_for_selector(".alert", timeout=PATIENCE_MS)
    cards = page.locator(".alert").count()
    wait_until(page, "n => { const imgs = [...document.querySelectorAll('.alert .thumb img')].filter(i => !i.hidden);"
                     " return imgs.length === n && imgs.every(i => i.complete && i.naturalWidth > 0); }", cards)
    deadline = page.evaluate("() => Date.now()") + PATIENCE_MS
    while len(pictures) < cards:  # the browser's reports of the finished requests may trail a little
        page.wait_for_timeout(50)
        assert page.evaluate("() => Date.now()") < deadline, f"{len(pictures)} of {cards} pictures reported"
    widths = page.evaluate("() => [...document.querySelectorAll('.alert .thumb img')].map(i => i.naturalWidth)")
    sent = sum(request.sizes()["responseBodySize"] for request in pictures)
    full = sum(len(site.history.snapshot(re.search(r"/api/events/([0-9a-f-]+)/", r.url).group(1),
                                         "peak" if "which=peak" in r.url else "start")) for r in pictures)
    total = sum(request.sizes()["responseBodySize"] for request in everything)
    print(f"\nthe list's {len(pictures)} pictures: {sent / 1e6:.2f} MB sent, {full / 1e6:.2f} MB as kept; "
          f"the whole page: {total / 1e6:.2f} MB")
    assert len(pictures) == cards == 50 and all("size=thumb" in r.url for r in pictures)
    assert max(widths) <= 320 and sent * 5 < full

    page.locator(".alert .thumb").first.click()
    wait_until(page, "() => document.querySelector('#lightbox-img').complete"
                     " && document.querySelector('#lightbox-img').naturalWidth === 768")
    assert "size=thumb" not in page.locator("#lightbox-img").get_attribute("src")
    context.close()


# --------------------------------------------------------------------------- 4. no hidden refresh


class Requests:
    """The page's requests in the order it made them, with marks to count from."""

    def __init__(self, page):
        self.urls: list[str] = []
        page.on("request", lambda request: self.urls.append(request.url))

    def count(self, part: str, since: int = 0) -> int:
        return sum(part in url for url in self.urls[since:])

    def wait_for(self, page, part: str, times: int) -> int:
        """Wait until `part` was requested `times` more times; returns the mark after them."""
        goal = self.count(part) + times
        deadline = page.evaluate("() => Date.now()") + PATIENCE_MS
        while self.count(part) < goal:
            page.wait_for_timeout(100)
            assert page.evaluate("() => Date.now()") < deadline, f"{part} was not requested {times} times"
        return len(self.urls)


def test_no_picture_refreshes_out_of_sight(browser, site):  # noqa: F811  (browser: the shared fixture)
    page = open_page(browser, site)
    requests = Requests(page)
    mark = requests.wait_for(page, "/api/cameras", 1)
    requests.wait_for(page, "/api/cameras", 2)  # the camera list refreshes; the wall is out of sight
    assert requests.count("/api/cameras/gate/snapshot.jpg", mark) == 0
    assert requests.count("/api/cameras/market/snapshot.jpg", mark) == 0
    page.click("#tab-cameras")  # in sight: the wall refreshes its pictures
    requests.wait_for(page, "/api/cameras/market/snapshot.jpg", 2)
    page.click("#tab-alerts")
    requests.wait_for(page, "/api/cameras", 2)
    mark = len(requests.urls)
    requests.wait_for(page, "/api/cameras", 2)
    assert requests.count("/api/cameras/market/snapshot.jpg", mark) == 0

    page.click("#tab-installer")  # the zone tool refreshes its picture...
    requests.wait_for(page, "/api/cameras/gate/snapshot.jpg", 2)
    page.click("#inst-tool-count")  # ...until 标注人数 is opened
    requests.wait_for(page, "/api/cameras/gate/counting", 2)
    mark = len(requests.urls)
    requests.wait_for(page, "/api/cameras/gate/counting", 3)
    assert requests.count("/api/cameras/gate/snapshot.jpg", mark) == 0, requests.urls[mark:]
    page.click("#inst-tool button[data-tool='zone']")
    requests.wait_for(page, "/api/cameras/gate/snapshot.jpg", 1)  # back in sight: refreshing again
    close(page)


def test_ctrl_z_undoes_only_in_the_tool_on_screen(browser, site):  # noqa: F811  (browser: the shared fixture)
    page = open_page(browser, site)
    page.click("#tab-installer")
    wait_until(page, "() => { const img = document.querySelector('#inst-img');"
                     " return img && !img.hidden && img.naturalWidth > 0; }")
    box = page.locator("#inst-img").bounding_box()
    for fx, fy in [(0.3, 0.3), (0.7, 0.3)]:
        page.mouse.click(box["x"] + box["width"] * fx, box["y"] + box["height"] * fy)
    assert page.locator("#inst-svg circle").count() == 2
    page.click("#inst-tool-count")
    page.keyboard.press("Control+z")
    page.keyboard.press("Control+z")
    page.click("#inst-tool button[data-tool='zone']")
    assert page.locator("#inst-svg circle").count() == 2  # the hidden zone tool kept its points
    page.keyboard.press("Control+z")
    assert page.locator("#inst-svg circle").count() == 1
    page.click("#tab-alerts")
    page.keyboard.press("Control+z")
    page.click("#tab-installer")
    assert page.locator("#inst-svg circle").count() == 1
    close(page)
