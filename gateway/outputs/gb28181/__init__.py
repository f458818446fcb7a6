"""GB/T 28181 live video: what the gateway sends when the platform INVITEs a camera channel.

The camera's encoded packets are remuxed, never re-encoded: `gateway.video.h26x` turns each
access unit into Annex B with its parameter sets, `ps` wraps it in MPEG-2 Program Stream,
`rtp` cuts that into RTP packets (RFC 4571 framing over TCP), `remux` ties the three together
with the timestamps, `sdp` reads the platform's offer and writes the answer, and `media`
(`LiveStream`) is the socket and thread that send one camera to one destination. Everything
but `media` is pure. SIP dialogs (INVITE/ACK/BYE) live elsewhere and call into these.
"""
