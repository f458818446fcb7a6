"""The page's counting tool under concurrent requests: a DELETE racing save, status, image and fit
answers 404 or succeeds, never 500, and leaves no orphan files behind; points are numbers, not
text or true/false.

The API runs on a real uvicorn (web_support.serve) with the real counting studio over a real
`LiveCounting`; the snapshots are real frames of the sample video with the features a warmed
counting background computes from them; the requests are real HTTP, sent in parallel.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path

import httpx
import numpy as np
import pytest

from conftest import VTEST, YOLOX_NANO
from gateway.analytics.counting import CrowdCounter
from gateway.calibration.live import CountingFrame, LiveCounting
from gateway.calibration.store import SnapshotStore
from gateway.calibration.studio import CountingStudio
from gateway.config.models import GatewayConfig
from gateway.video.decode import decode_frames, open_video
from waiting import PATIENCE_S
from web_support import TOKEN, serve

AUTH = {"Authorization": f"Bearer {TOKEN}"}
SNAPSHOTS = 12


def camera_config(data_dir: Path) -> GatewayConfig:
    return GatewayConfig.model_validate({
        "gateway": {"id": "gw-races", "data_dir": str(data_dir)},
        "detector": {"model": str(YOLOX_NANO)},
        "cameras": [{"id": "cam1", "source": {"file": str(VTEST)}, "resolution": [768, 576],
                     "counting": {"mode": "auto", "person_height_px": [20, 150]}}],
    })


def stored_snapshots(folder: Path, count: int) -> list[str]:
    """`count` snapshots of real frames, with the features of a background warmed on the video."""
    with open_video(VTEST) as container:
        frames = [decoded.bgr() for _, decoded in zip(range(count + 10), decode_frames(container), strict=False)]
    counter = CrowdCounter((768, 576))
    counter.warm_from(frames[:10])
    store = SnapshotStore(folder)
    ids = []
    for index, image in enumerate(frames[10:]):
        counter.observe(image, np.zeros((0, 4)), float(index))
        assert counter.last_features is not None
        frame = CountingFrame(image, counter.last_features, 3, None, np.zeros((0, 4), np.float32),
                              datetime.now().astimezone(), 0.0)
        ids.append(store.add(frame).id)
    return ids


@pytest.fixture
def counting_api(tmp_path: Path):
    config = camera_config(tmp_path / "data")
    live = LiveCounting(config.cameras[0], config.gateway.data_dir)
    studio = CountingStudio(config.gateway.data_dir, lambda camera_id: live if camera_id == "cam1" else None)
    folder = studio.store("cam1").folder
    ids = stored_snapshots(folder, SNAPSHOTS)
    with serve(tmp_path / "api", counting_studio=studio) as served:
        yield served.url, ids, folder


def test_deletes_racing_every_other_request_never_fail_and_leave_no_orphans(counting_api) -> None:
    url, ids, folder = counting_api
    base = "/api/cameras/cam1/counting/snapshots"
    points = {"points": [[100.0, 200.0], [300.5, 400.0]]}

    async def race() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=url, headers={**AUTH, "Origin": url}, timeout=PATIENCE_S) as client:
            # Annotate enough for a fit, then delete every snapshot while the rest goes on.
            await asyncio.gather(*[client.put(f"{base}/{sid}/points", json=points) for sid in ids[:6]])
            requests = []
            for sid in ids:
                requests += [client.delete(f"{base}/{sid}"), client.put(f"{base}/{sid}/points", json=points),
                             client.get(f"{base}/{sid}"), client.get(f"{base}/{sid}/image.jpg"),
                             client.get("/api/cameras/cam1/counting"), client.post("/api/cameras/cam1/counting/fit")]
            return await asyncio.gather(*requests)

    answers = asyncio.run(race())
    failures = [(a.request.method, a.request.url.path, a.status_code, a.text[:200]) for a in answers
                if a.status_code >= 500]
    assert not failures
    assert {a.status_code for a in answers} <= {200, 201, 204, 404, 409}
    stems = {path.name.split(".")[0] for path in folder.iterdir() if not path.name.startswith(".")}
    orphans = [path.name for path in folder.iterdir() if path.suffix in (".json", ".jpg")
               and not (folder / f"{path.stem}.npz").exists()]
    assert not orphans, f"files left without their snapshot: {orphans}"
    leftovers = [path.name for path in folder.iterdir() if path.name.startswith(".")]
    assert not leftovers, f"temporary files left: {leftovers}"
    assert stems <= set(ids)


@pytest.mark.parametrize("points", [[["1", 2]], [[True, 2]], [[1, None]], [[1, 2, 3]], [["NaN", 2]]])
def test_points_must_be_numbers(counting_api, points) -> None:
    url, ids, _folder = counting_api
    with httpx.Client(base_url=url, headers={**AUTH, "Origin": url}, timeout=PATIENCE_S) as client:
        answer = client.put(f"/api/cameras/cam1/counting/snapshots/{ids[0]}/points", json={"points": points})
        assert answer.status_code == 422, answer.text
        assert client.get(f"/api/cameras/cam1/counting/snapshots/{ids[0]}").json()["points"] is None
