"""Evidence video: the clip every video alert carries, cut from what the camera sent.

Each camera keeps its last seconds of encoded packets in a `gateway.video.packets.PacketRing`.
When an alert starts, a clip is remuxed (never re-encoded) into a fragmented MP4 from the last
keyframe before the pre-roll, and follows the live packets until the event has ended for
`post_s` (at most `max_s` after its start). Modules, from bytes to files:

* `mp4` — one clip file: packets of one stream into a fragmented MP4 (PyAV, no re-encoding);
* `clips` — one camera's clips: which packets go into which event's clip, and their status;
* `store` — the clip files on disk: names, quota, shedding on a full disk, listing, stats;
* `worker` — the one thread that writes every camera's clips (never the camera's reader).
"""
