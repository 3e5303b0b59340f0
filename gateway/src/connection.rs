//! One TCP device connection: the codec's session through tokio-util framing, the login
//! checked against the registry, every frame published to JetStream and acknowledged
//! only once stored, and the timeouts that keep a silent device from holding a slot.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use bytes::BytesMut;
use fleetgate_codecs::{Event, Fatal, Protocol, Session, UtcMillis};
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::codec::{Decoder, FramedRead};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::archive::{self, Capture, Frame, Origin, Outcome};
use crate::commands::{Command, DeviceQueue, Registration, parse_command};
use crate::gateway::{Gateway, Login};
use crate::metrics::Refusal;
use crate::registry::DeviceRecord;

/// How long a device has to answer a command before the next one may go.
const COMMAND_ANSWER_TIMEOUT: Duration = Duration::from_secs(120);

/// Initial read buffer per connection.
const INITIAL_READ_BUFFER: usize = 512;

/// How long a reply may take to leave before the device counts as gone.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a connection's stream ended.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The codec could not frame the stream any more.
    #[error(transparent)]
    Fatal(#[from] Fatal),
    /// The socket failed.
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
}

/// A codec session as a tokio-util decoder, copying what each event consumed for the
/// archive.
pub struct SessionCodec {
    session: Box<dyn Session>,
    capture: Capture,
    /// Bytes of a frame the stream ended inside.
    cut_off: usize,
}

impl SessionCodec {
    /// Wraps a session; `archive` keeps the bytes of each event for [`Self::take_frame`].
    pub fn new(session: Box<dyn Session>, archive: bool) -> Self {
        SessionCodec { session, capture: Capture::new(archive), cut_off: 0 }
    }

    /// The bytes consumed since the last call (what the last event was made of) and
    /// their full count; with `rest`, every byte still unconsumed too.
    pub fn take_frame(&mut self, rest: bool) -> (bytes::Bytes, usize) {
        if rest {
            self.capture.abandon();
        }
        self.capture.take()
    }

    /// Frames a command for the device, and whether the device answers it.
    pub fn command(&self, payload: &[u8]) -> Option<(bytes::Bytes, bool)> {
        self.session.command(payload)
    }

    /// Hands a published batch back to the session for its allocations.
    pub fn recycle(&mut self, batch: fleetgate_codecs::Batch) {
        self.session.recycle(batch);
    }
}

impl Decoder for SessionCodec {
    type Item = Event;
    type Error = StreamError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Event>, StreamError> {
        self.capture.before(src);
        let event = self.session.decode(src);
        self.capture.after(src.len());
        Ok(event?)
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Event>, StreamError> {
        // A device that disconnects mid-frame gets nothing acknowledged; it resends.
        let event = self.decode(src)?;
        if event.is_none() && !src.is_empty() {
            // Counted once the connection ends (it may also end by a timeout).
            self.capture.abandon();
            self.cut_off = src.len();
            src.clear();
        }
        Ok(event)
    }
}

async fn send(writer: &mut OwnedWriteHalf, reply: &[u8]) -> bool {
    if reply.is_empty() {
        return true;
    }
    match tokio::time::timeout(WRITE_TIMEOUT, writer.write_all(reply)).await {
        Ok(Ok(())) => true,
        Ok(Err(error)) => {
            tracing::debug!(%error, "reply not delivered");
            false
        }
        Err(_) => {
            tracing::debug!("reply timed out");
            false
        }
    }
}

/// Serves one device connection until it closes, times out, breaks or `shutdown`.
pub async fn serve(
    socket: TcpStream,
    peer: SocketAddr,
    protocol: Protocol,
    idle_timeout: Duration,
    gateway: Arc<Gateway>,
    shutdown: CancellationToken,
    _slot: OwnedSemaphorePermit,
) {
    let span = tracing::info_span!("device", %peer, protocol = protocol.name(), device = tracing::field::Empty);
    let counters = gateway.metrics.protocol(protocol);
    counters.connections.fetch_add(1, Relaxed);
    counters.connections_total.fetch_add(1, Relaxed);
    let device = run(socket, protocol, idle_timeout, &gateway, &shutdown).instrument(span.clone()).await;
    counters.connections.fetch_sub(1, Relaxed);
    if let Some((identifier, record)) = device {
        gateway.publish_status(&identifier, &record, false).instrument(span).await;
    }
}

/// The connection loop; returns the device it served, for the offline event.
async fn run(
    socket: TcpStream,
    protocol: Protocol,
    idle_timeout: Duration,
    gateway: &Gateway,
    shutdown: &CancellationToken,
) -> Option<(String, DeviceRecord)> {
    let _ = socket.set_nodelay(true);
    let (reader, mut writer) = socket.into_split();
    let session = protocol.session(gateway.config.gateway.limits.session_options());
    // Start small: most connections sit idle between frames, and the codec reserves room
    // for a whole frame once it has read the frame's (bounded) length.
    let mut frames =
        FramedRead::with_capacity(reader, SessionCodec::new(session, gateway.config.nats.archive), INITIAL_READ_BUFFER);
    let mut archive = ConnectionArchive::new(protocol);
    // The stream could not be framed: its rest is the fatal frame's, not an incomplete one.
    let mut broken = false;
    let counters = gateway.metrics.protocol(protocol);
    let mut device: Option<(String, DeviceRecord)> = None;
    let mut registration: Option<Registration> = None;
    let mut queue: Option<DeviceQueue> = None;
    // The command sent and not answered yet, and when; the next one waits for it.
    let mut awaiting: Option<(String, async_nats::jetstream::Message)> = None;
    let mut awaiting_since = std::time::Instant::now();
    loop {
        if awaiting.is_some() && awaiting_since.elapsed() > COMMAND_ANSWER_TIMEOUT {
            // No answer: leave the command in the queue (JetStream redelivers it once its
            // ack wait is over) and let the next wake-up take it again.
            if let Some((command_id, _)) = awaiting.take() {
                tracing::warn!(command_id, "no answer to the command; it stays queued");
            }
        }
        let timeout = if device.is_some() { idle_timeout } else { gateway.config.gateway.handshake_timeout() };
        // Shutdown interrupts only the waits: a frame already read is published and
        // answered before the connection closes.
        let next = tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(()) = wake_up(&mut registration), if awaiting.is_none() => {
                let (Some(queue), Some((_, record))) = (queue.as_mut(), device.as_ref()) else { continue };
                // Boxed: these futures are large and rare, and every idle connection's
                // task would otherwise carry room for them (see BENCHMARKS.md).
                let Some(message) = Box::pin(queue.next()).await else { continue };
                let command = parse_command(&message.payload).map(|command| {
                    let framed = frames.decoder().command(&command.payload);
                    (command, framed)
                });
                let sent = command.as_ref().ok().and_then(|(_, framed)| framed.as_ref()).map(|(bytes, _)| bytes.clone());
                let delivery = Box::pin(deliver(command, &mut writer, message)).await;
                if let (Some(bytes), false) = (sent, matches!(delivery, Delivery::SocketFailed)) {
                    let size = bytes.len();
                    let frame = Frame { time: now(), bytes, size, outcome: Outcome::Command, reply: None };
                    archive.record(gateway, device.as_ref(), frame);
                }
                match delivery {
                    Delivery::Awaiting(sent) => {
                        awaiting = Some(*sent);
                        awaiting_since = std::time::Instant::now();
                    }
                    Delivery::Done => gateway.connected.wake(record.device_id),
                    Delivery::SocketFailed => break,
                }
                continue;
            }
            next = tokio::time::timeout(timeout, frames.next()) => next,
        };
        let event = match next {
            Err(_) => {
                let refusal = if device.is_some() { Refusal::IdleTimeout } else { Refusal::HandshakeTimeout };
                gateway.metrics.refused(refusal);
                tracing::info!(timeout_s = timeout.as_secs(), "closing a silent connection");
                break;
            }
            Ok(None) => break,
            Ok(Some(Err(StreamError::Fatal(fatal)))) => {
                gateway.metrics.refused(Refusal::Fatal);
                broken = true;
                tracing::warn!(offset = fatal.offset, error = %fatal.error, "closing a stream that cannot be framed");
                let outcome = Outcome::Fatal { offset: fatal.offset, error: fatal.error };
                let (bytes, size) = frames.decoder_mut().take_frame(true);
                archive.record(gateway, device.as_ref(), Frame { time: now(), bytes, size, outcome, reply: None });
                break;
            }
            Ok(Some(Err(StreamError::Io(error)))) => {
                tracing::debug!(%error, "socket error");
                break;
            }
            Ok(Some(Ok(event))) => event,
        };
        counters.frames.fetch_add(1, Relaxed);
        let (bytes, size) = frames.decoder_mut().take_frame(false);
        let mut frame = Frame { time: now(), bytes, size, outcome: Outcome::KeepAlive, reply: None };
        match event {
            Event::Login { device: identifier, password, accept, reject } => {
                match gateway.login(protocol, &identifier, password.as_deref()).await {
                    Login::Accepted(record) => {
                        tracing::Span::current().record("device", identifier.as_str());
                        let delivered = send(&mut writer, &accept).await;
                        frame.outcome = Outcome::Login;
                        frame.reply = Some(accept);
                        archive.record(gateway, Some(&(identifier.clone(), record.clone())), frame);
                        if !delivered {
                            break;
                        }
                        gateway.publish_status(&identifier, &record, true).await;
                        registration = Some(gateway.connected.register(record.device_id));
                        queue = Some(DeviceQueue::new(
                            gateway.jetstream.clone(),
                            gateway.connected.lookups.clone(),
                            &gateway.config.nats.command_stream,
                            &gateway.config.nats.subject_prefix,
                            record.tenant_id,
                            record.device_id,
                        ));
                        device = Some((identifier, record));
                    }
                    Login::Refused { reply } => {
                        let reply = reply.unwrap_or(reject);
                        let _ = send(&mut writer, &reply).await;
                        frame.outcome = Outcome::LoginRefused;
                        frame.reply = Some(reply);
                        archive.refused_login(gateway, &identifier, frame);
                        break;
                    }
                }
            }
            Event::Positions { mut batch, ack, .. } => {
                let Some((identifier, record)) = &device else { break };
                // The positions' `received` and the frame's archive time are one value:
                // it is how `fleetgate reprocess` finds the rows a frame became.
                batch.received = Some(frame.time);
                let count = batch.len();
                let stored = gateway.store_positions(identifier, record, &batch).await;
                if !stored {
                    // Nothing is acknowledged; closing makes the device resend everything
                    // it holds once it reconnects, instead of waiting for an answer.
                    frame.outcome = Outcome::NotStored(count);
                    archive.record(gateway, device.as_ref(), frame);
                    break;
                }
                counters.positions.fetch_add(count as u64, Relaxed);
                frames.decoder_mut().recycle(batch);
                let delivered = send(&mut writer, &ack).await;
                frame.outcome = Outcome::Positions(count);
                frame.reply = Some(ack);
                archive.record(gateway, device.as_ref(), frame);
                if !delivered {
                    break;
                }
                counters.acks.fetch_add(1, Relaxed);
            }
            Event::Message { message, reply } => {
                let Some((identifier, record)) = &device else { break };
                let answered = if message.is_command_response() { awaiting.take() } else { None };
                let command_id = answered.as_ref().map(|(id, _)| id.as_str());
                frame.outcome = Outcome::Message(message.kind);
                if !gateway.store_message(identifier, record, &message, command_id).await {
                    archive.record(gateway, device.as_ref(), frame);
                    break;
                }
                if let Some((_, command)) = answered {
                    // Answered and the answer stored: the command leaves the queue.
                    if let Err(error) = Box::pin(command.ack()).await {
                        tracing::warn!(%error, "command answered but not removed from the queue; it will be sent again");
                    }
                    gateway.connected.wake(record.device_id);
                }
                if !archive.answer(gateway, device.as_ref(), &mut writer, frame, reply).await {
                    break;
                }
            }
            Event::KeepAlive { reply } => {
                if !archive.answer(gateway, device.as_ref(), &mut writer, frame, reply).await {
                    break;
                }
            }
            Event::Refused { offset, error, reply } => {
                gateway.metrics.refused(Refusal::Frame);
                if let Some(suppressed) = gateway.refusal_log.allow() {
                    tracing::warn!(offset, %error, suppressed, "frame refused");
                }
                frame.outcome = Outcome::Refused { offset, error };
                if !archive.answer(gateway, device.as_ref(), &mut writer, frame, reply).await {
                    break;
                }
            }
        }
    }
    // Whatever was left unframed (a frame cut short, a device gone silent mid-frame).
    let (bytes, size) = frames.decoder_mut().take_frame(true);
    let unframed = frames.read_buffer().len() + frames.decoder().cut_off;
    if unframed > 0 && !broken && !shutdown.is_cancelled() {
        gateway.metrics.refused(Refusal::Incomplete);
        if let Some(suppressed) = gateway.refusal_log.allow() {
            tracing::info!(bytes = unframed, suppressed, "connection ended inside a frame; nothing of it acknowledged");
        }
    }
    if size > 0 {
        let frame = Frame { time: now(), bytes, size, outcome: Outcome::Incomplete, reply: None };
        archive.record(gateway, device.as_ref(), frame);
    }
    archive.close(gateway);
    let _ = writer.shutdown().await;
    if let (Some(registration), Some((_, record))) = (&registration, &device) {
        gateway.connected.unregister(record.device_id, registration);
    }
    device
}

/// Frames of one connection on their way to the archive. Frames before the login wait
/// (a few at most) until the device is known; a connection that never logs in leaves
/// them as an unregistered device's.
struct ConnectionArchive {
    protocol: Protocol,
    connection: u64,
    early: Vec<Frame>,
}

/// Frames kept before a login; a device that sends more garbage than this first is
/// recorded by the first ones.
const MAX_EARLY_FRAMES: usize = 8;

impl ConnectionArchive {
    fn new(protocol: Protocol) -> Self {
        ConnectionArchive { protocol, connection: archive::connection_id(), early: Vec::new() }
    }

    fn origin<'a>(&self, device: Option<&'a (String, DeviceRecord)>, identifier: Option<&'a str>) -> Origin<'a> {
        Origin {
            protocol: self.protocol,
            transport: "tcp",
            connection: self.connection,
            device: device.map(|(identifier, record)| (identifier.as_str(), record.tenant_id, record.device_id)),
            identifier,
        }
    }

    fn record(&mut self, gateway: &Gateway, device: Option<&(String, DeviceRecord)>, frame: Frame) {
        if !gateway.config.nats.archive {
            return;
        }
        // A frame can yield several events (a black box with one bad record, several
        // codec 12 messages): the first carries the bytes; of the rest, only a refusal or
        // a reply is worth a record of its own.
        let follow_up = frame.size == 0 && frame.reply.as_ref().is_none_or(|r| r.is_empty());
        if follow_up && !matches!(frame.outcome, Outcome::Refused { .. }) {
            return;
        }
        if device.is_none() {
            if self.early.len() < MAX_EARLY_FRAMES {
                self.early.push(frame);
            }
            return;
        }
        self.publish(gateway, self.origin(device, None), Some(frame));
    }

    /// Archives the frames waiting for a login, then `frame`, as `origin`'s.
    fn publish(&mut self, gateway: &Gateway, origin: Origin<'_>, frame: Option<Frame>) {
        for frame in std::mem::take(&mut self.early).iter().chain(frame.as_ref()) {
            gateway.archive(origin, frame);
        }
    }

    /// A refused login: kept under the device when the identifier is registered (wrong
    /// password or protocol), else as an unregistered device's.
    fn refused_login(&mut self, gateway: &Gateway, identifier: &str, frame: Frame) {
        match gateway.registry.lookup(identifier) {
            Some(record) => self.record(gateway, Some(&(identifier.to_owned(), record)), frame),
            None if gateway.config.nats.archive => {
                self.publish(gateway, self.origin(None, Some(identifier)), Some(frame))
            }
            None => {}
        }
    }

    /// Sends `reply` (if any), then records the frame with it; false when the device is
    /// gone.
    async fn answer(
        &mut self,
        gateway: &Gateway,
        device: Option<&(String, DeviceRecord)>,
        writer: &mut OwnedWriteHalf,
        mut frame: Frame,
        reply: Option<bytes::Bytes>,
    ) -> bool {
        let delivered = match &reply {
            Some(reply) => send(writer, reply).await,
            None => true,
        };
        frame.reply = reply;
        self.record(gateway, device, frame);
        delivered
    }

    /// Frames of a connection that never logged in.
    fn close(&mut self, gateway: &Gateway) {
        self.publish(gateway, self.origin(None, None), None);
    }
}

/// Waits for a command wake-up once the device is logged in; never before.
async fn wake_up(registration: &mut Option<Registration>) -> Option<()> {
    match registration {
        Some(registration) => registration.wake_ups.recv().await,
        None => std::future::pending().await,
    }
}

enum Delivery {
    /// Sent; the device's answer will acknowledge it.
    Awaiting(Box<(String, async_nats::jetstream::Message)>),
    /// Sent without an answer to wait for, or dropped as unusable; look for the next.
    Done,
    /// The device is gone; the command stays queued.
    SocketFailed,
}

/// Sends one queued command (parsed and framed by the caller) to the device.
async fn deliver(
    command: Result<(Command, Option<(bytes::Bytes, bool)>), String>,
    writer: &mut OwnedWriteHalf,
    message: async_nats::jetstream::Message,
) -> Delivery {
    let (command, framed) = match command {
        Ok(parsed) => parsed,
        Err(error) => {
            // Retrying cannot fix it: remove it, say why.
            tracing::warn!(%error, "unusable command dropped");
            let _ = message.ack().await;
            return Delivery::Done;
        }
    };
    let Some((bytes, answers)) = framed else {
        tracing::warn!(command_id = command.id, "this protocol cannot carry the command; dropped");
        let _ = message.ack().await;
        return Delivery::Done;
    };
    if !send(writer, &bytes).await {
        return Delivery::SocketFailed;
    }
    tracing::info!(command_id = command.id, "command sent");
    if answers {
        return Delivery::Awaiting(Box::new((command.id, message)));
    }
    if let Err(error) = message.ack().await {
        tracing::warn!(%error, command_id = command.id, "command sent but not removed from the queue");
    }
    Delivery::Done
}

/// The receive time.
pub fn now() -> UtcMillis {
    let ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
    UtcMillis(ms as i64)
}
