"""`gateway run`: the service that starts every part, supervises it and reloads it, and the live
view through which the web API, the metrics, the outputs and the sensors see the running cameras.

    service.py   GatewayService: start, supervise (watchdog, camera state, disk), reload, stop
    live.py      LiveGateway: the running gateway as `gateway.status.GatewayView` (read) and
                 `CameraControl` (turn, evidence): the one object handed to the parts above cameras
    sdnotify.py  systemd's notify protocol (READY, WATCHDOG, STATUS)
"""
