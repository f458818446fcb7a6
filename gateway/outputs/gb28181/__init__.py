"""GB/T 28181 output: the gateway registers with the centre's video platform as a device (SIP
over UDP or TCP), raises every new alert there as an alarm on a catalogue channel, answers the
platform's queries, PTZ controls and subscriptions, and streams a camera's video when the
platform INVITEs its channel.

Signalling, pure first: `sip` (messages, framing), `digest` (REGISTER authentication), `manscdp`
(the XML bodies), `alarm_types` (alert -> alarm codes), `ptzcmd` (the PTZCmd decoder), `actions`
(settings, counters and what the device asks the transport to do), `queries` (the answers to
queries and controls), `subscriptions` (SUBSCRIBE/NOTIFY), `invites` (INVITE dialogs: live
video and playback), `serving` (the device's server side) and `device` (the state machine);
then the I/O: `camera_worker` (camera jobs off the SIP thread), `streams` (the video of the
INVITE sessions) and `transport`, the sockets and the thread (`Gb28181Transport`, a delivery
`Transport`).

Live video: the camera's encoded packets are remuxed, never re-encoded: `gateway.video.h26x`
turns each access unit into Annex B with its parameter sets, `ps` wraps it in MPEG-2 Program
Stream, `rtp` cuts that into RTP packets (RFC 4571 framing over TCP), `remux` ties the three
together with the timestamps, `sdp` reads the platform's offer and writes the answer, and
`media` (`LiveStream`) is the socket and thread that send one camera to one destination, from
a `sources` packet source: the camera's packet ring (the analysis reader's) or, for playback,
an evidence clip (`playback`).
"""

from gateway.backoff import Backoff
from gateway.config.gb28181 import Gb28181Output
from gateway.delivery.durable import DurableSink
from gateway.delivery.sink import AlertSink
from gateway.outputs.gb28181.transport import Gb28181Transport
from gateway.outputs.registry import OutputContext, output

__all__ = ["Gb28181Transport", "build_gb28181"]


@output(Gb28181Output)
def build_gb28181(settings: Gb28181Output, context: OutputContext) -> AlertSink:
    """A GB/T 28181 output: the durable one-at-a-time sink around the registered device."""
    config, view = context.config, context.view
    transport = Gb28181Transport(settings, cameras=config.cameras, timezone=config.gateway.timezone,
                                 gateway_name=config.gateway.name, camera_online=view.camera_online if view else None,
                                 sensors=config.sensors, control=context.control, records=context.records,
                                 video=context.video)
    return DurableSink(settings.sink_name, context.outbox, transport,
                       backoff=Backoff(1.0, max(1.0, settings.retry_max_s)), timeout_s=settings.answer_timeout_s)
