"""Delivery: everything that happens to an alert after it is raised.

    events ─► router ─┬─► output: MQTT       (mqtt/: its outbox ─► broker; presence, acks, cases)
                      ├─► output: webhook    (durable sink + webhook transport ─► HTTP POST)
                      ├─► output: GB/T 28181 (durable sink + gb28181/ transport ─► SIP platform)
                      ├─► history            (the web page's record, pictures, acks, case steps)
                      └─► reactions          (PTZ linkage)

    sink.py       the shapes every output takes: AlertSink (what the router sees), Transport
                  (one-at-a-time senders), DeliveryFailed
    router.py     AlertRouter: queue for every output first, then history, then reactions; the
                  full-disk policy, the disk_full alert, the case loop; never raises
    outputs.py    the configured outputs (gateway.config.outputs) as sinks, one outbox file each
    durable.py    DurableSink: an outbox, a delivery thread and backoff around a Transport
    webhook.py    the webhook Transport (HTTP POST, HMAC X-Signature)
    mqtt/         the MQTT output (sink, topics, inbound messages)
    outbox.py     the durable queue of one output (SQLite, fsynced; held in memory if the disk is full)
    history.py    the event history the API and page read
    storage.py    the one way to open these SQLite files and to tell a full disk
    cases.py      the centre's case progress (dispatched ... verified)
    diskwatch.py  the disk_full alert's lifecycle (pure)
    reactions.py  PTZ linkage (pure decision, the service's hand)
    latency.py    put -> delivered latency windows for health and metrics
"""
