"""One live camera's moving parts, as `gateway run` drives them.

    worker.py        CameraWorker: the reader, motion gate, analytics and the watches below, for one
                     camera; what the scheduler analyses and the supervisor ticks
    sources.py       the reader and PTZ patrol a camera's configured source needs
    scheduler.py     AnalysisScheduler: one detector shared by every camera, fair by detector time
    timing.py        detector time per analysed frame (all its tiles), measured once
    tiling.py        a camera's tile plan for far views (from its zones, masks and tiling settings)
    offline.py       the camera_offline watch (no frames for offline_after_s)
    patrol_fault.py  the patrol_fault watch (a PTZ patrol that cannot move)
    alarms.py        the camera's own ONVIF alarms as camera_tamper/sensor alerts

The watches are pure (clock passed in) and built on `gateway.events.watch.AlertWatch`.
"""
