//! One TCP device connection: the codec's session through tokio-util framing, the login
//! checked against the registry, every frame published to JetStream and acknowledged
//! only once stored, commands delivered one at a time, and the timeouts that keep a
//! silent device from holding a slot.
//!
//! A connection is a [`Connection`] that waits for its next [`Step`] (a frame, a
//! command wake-up, a timeout, the end) and takes it: the state lives in named fields,
//! not in the loop. What an event gets is [`Gateway::respond`], shared with UDP.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use fleetgate_codecs::{Event, Fatal, Protocol, Session};
use fleetgate_contracts::clock::now;
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::codec::{Decoder, FramedRead};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::archive::{self, Capture, Frame, Origin, Outcome};
use crate::commands::{Command, DeviceQueue, Registration, parse_command};
use crate::gateway::{Device, Gateway, Waiting};
use crate::metrics::Refusal;

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
    pub fn take_frame(&mut self, rest: bool) -> (Bytes, usize) {
        if rest {
            self.capture.abandon();
        }
        self.capture.take()
    }

    /// Frames a command for the device, and whether the device answers it.
    pub fn command(&self, payload: &[u8]) -> Option<(Bytes, bool)> {
        self.session.command(payload)
    }

    /// Hands a published batch back to the session for its allocations.
    pub fn recycle(&mut self, batch: fleetgate_codecs::Batch) {
        self.session.recycle(batch);
    }

    /// Applies a logged-in device's settings to its session.
    pub fn configure(&mut self, settings: &fleetgate_codecs::DeviceSettings) {
        self.session.configure(settings);
    }
}

impl Decoder for SessionCodec {
    type Item = Event;
    type Error = StreamError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Event>, StreamError> {
        self.capture.before(src);
        // Only protocols whose answers carry the time (GT06 time requests) use it.
        self.session.clock(now());
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
    let span = tracing::info_span!("device", %peer, %protocol, device = tracing::field::Empty);
    let counters = gateway.metrics.protocol(protocol);
    counters.connections.fetch_add(1, Relaxed);
    counters.connections_total.fetch_add(1, Relaxed);
    let _ = socket.set_nodelay(true);
    let connection = Connection::new(socket, protocol, idle_timeout, gateway.clone());
    let device = connection.run(&shutdown).instrument(span.clone()).await;
    counters.connections.fetch_sub(1, Relaxed);
    if let Some(device) = device {
        gateway.publish_status(&device, false).instrument(span).await;
    }
}

/// What a connection does next.
enum Step {
    /// Shutting down: stop waiting (a frame already read was answered).
    Shutdown,
    /// Commands may be waiting for the device.
    Commands,
    /// The device sent nothing for too long.
    Silent,
    /// The device closed the connection.
    Closed,
    /// The stream can no longer be framed.
    Broken(Fatal),
    /// The socket failed.
    Failed(std::io::Error),
    /// One event of the device's stream.
    Event(Event),
}

/// A command sent to the device and not answered yet.
struct Awaiting {
    command_id: String,
    message: async_nats::jetstream::Message,
    since: Instant,
}

/// A logged-in device's place in the command queues.
struct Commands {
    registration: Registration,
    queue: DeviceQueue,
}

/// One TCP connection's state.
struct Connection {
    gateway: Arc<Gateway>,
    protocol: Protocol,
    idle_timeout: Duration,
    frames: FramedRead<OwnedReadHalf, SessionCodec>,
    writer: OwnedWriteHalf,
    archive: ConnectionArchive,
    /// The device, once logged in.
    device: Option<Device>,
    /// Its commands, once logged in.
    commands: Option<Commands>,
    /// The command sent and not answered yet; the next one waits for it.
    awaiting: Option<Awaiting>,
    /// The stream could not be framed: its rest is the fatal frame's, not an incomplete one.
    broken: bool,
}

impl Connection {
    fn new(socket: TcpStream, protocol: Protocol, idle_timeout: Duration, gateway: Arc<Gateway>) -> Self {
        let (reader, writer) = socket.into_split();
        let session = protocol.session(gateway.config.gateway.limits.session_options());
        // Start small: most connections sit idle between frames, and the codec reserves
        // room for a whole frame once it has read the frame's (bounded) length.
        let codec = SessionCodec::new(session, gateway.config.nats.archive);
        Connection {
            frames: FramedRead::with_capacity(reader, codec, INITIAL_READ_BUFFER),
            writer,
            archive: ConnectionArchive::new(protocol),
            device: None,
            commands: None,
            awaiting: None,
            broken: false,
            gateway,
            protocol,
            idle_timeout,
        }
    }

    /// Runs the connection to its end; returns the device it served, for the offline
    /// event.
    async fn run(mut self, shutdown: &CancellationToken) -> Option<Device> {
        loop {
            let step = self.next_step(shutdown).await;
            if !self.take(step).await {
                break;
            }
        }
        self.finish(shutdown).await;
        self.device
    }

    /// Waits for the next thing to do. Shutdown interrupts only the waits: a frame
    /// already read is answered before the connection closes.
    async fn next_step(&mut self, shutdown: &CancellationToken) -> Step {
        if self.awaiting.as_ref().is_some_and(|a| a.since.elapsed() > COMMAND_ANSWER_TIMEOUT) {
            // No answer: leave the command in the queue (JetStream redelivers it once
            // its ack wait is over) and let the next wake-up take it again.
            if let Some(awaiting) = self.awaiting.take() {
                tracing::warn!(command_id = awaiting.command_id, "no answer to the command; it stays queued");
            }
        }
        let timeout =
            if self.device.is_some() { self.idle_timeout } else { self.gateway.config.gateway.handshake_timeout() };
        let can_send = self.awaiting.is_none();
        tokio::select! {
            _ = shutdown.cancelled() => Step::Shutdown,
            Some(()) = wake_up(self.commands.as_mut()), if can_send => Step::Commands,
            next = tokio::time::timeout(timeout, self.frames.next()) => match next {
                Err(_) => Step::Silent,
                Ok(None) => Step::Closed,
                Ok(Some(Err(StreamError::Fatal(fatal)))) => Step::Broken(fatal),
                Ok(Some(Err(StreamError::Io(error)))) => Step::Failed(error),
                Ok(Some(Ok(event))) => Step::Event(event),
            },
        }
    }

    /// Takes one step; false when the connection ends.
    async fn take(&mut self, step: Step) -> bool {
        match step {
            Step::Shutdown | Step::Closed => false,
            Step::Commands => self.send_command().await,
            Step::Silent => {
                let refusal = if self.device.is_some() { Refusal::IdleTimeout } else { Refusal::HandshakeTimeout };
                self.gateway.metrics.refused(refusal);
                tracing::info!("closing a silent connection");
                false
            }
            Step::Broken(fatal) => {
                self.gateway.metrics.refused(Refusal::Fatal);
                self.broken = true;
                tracing::warn!(offset = fatal.offset, error = %fatal.error, "closing a stream that cannot be framed");
                let outcome = Outcome::Fatal { offset: fatal.offset, error: fatal.error };
                let (bytes, size) = self.frames.decoder_mut().take_frame(true);
                self.record(Frame { time: now(), bytes, size, outcome, reply: None });
                false
            }
            Step::Failed(error) => {
                tracing::debug!(%error, "socket error");
                false
            }
            Step::Event(event) => self.answer(event).await,
        }
    }

    /// What the gateway makes of one event, sent back and archived.
    async fn answer(&mut self, event: Event) -> bool {
        let gateway = self.gateway.clone();
        gateway.metrics.protocol(self.protocol).frames.fetch_add(1, Relaxed);
        let (bytes, size) = self.frames.decoder_mut().take_frame(false);
        let time = now();
        let login = matches!(event, Event::Login { .. });
        let answered = match &event {
            Event::Message { message, .. } if message.answers_command => self.awaiting.take(),
            _ => None,
        };
        let command_id = answered.as_ref().map(|a| a.command_id.as_str());
        let was_logged_in = self.device.is_some();
        let refused_login = match &event {
            Event::Login { device, .. } => Some(device.clone()),
            _ => None,
        };
        let response =
            gateway.respond(self.protocol, Waiting::Allowed, &mut self.device, event, time, command_id).await;
        if let Some(batch) = response.spent {
            self.frames.decoder_mut().recycle(batch);
        }
        if login && let Some(device) = &self.device {
            // The frames that follow read with what the registration says of the device.
            self.frames.decoder_mut().configure(&device.record.settings);
        }
        let stored_data = matches!(response.outcome, Outcome::Positions(_));
        let delivered = match &response.reply {
            Some(reply) if !response.close || login => send(&mut self.writer, reply).await,
            _ => true,
        };
        let frame = Frame { time, bytes, size, outcome: response.outcome, reply: response.reply };
        match (&frame.outcome, refused_login) {
            (Outcome::LoginRefused, Some(identifier)) => self.archive.refused_login(&gateway, &identifier, frame),
            _ => self.record(frame),
        }
        if response.close || !delivered {
            return false;
        }
        if stored_data {
            gateway.metrics.protocol(self.protocol).acks.fetch_add(1, Relaxed);
        }
        if let Some(awaiting) = answered {
            // Answered and the answer stored: the command leaves the queue.
            if let Err(error) = Box::pin(awaiting.message.ack()).await {
                tracing::warn!(%error, "command answered but not removed from the queue; it will be sent again");
            }
            if let Some(device) = &self.device {
                gateway.connected.wake(device.record.device_id);
            }
        }
        if !was_logged_in && let Some(device) = self.device.clone() {
            self.logged_in(device).await;
        }
        true
    }

    /// A device logged in: it is online, and its commands can reach it here.
    async fn logged_in(&mut self, device: Device) {
        tracing::Span::current().record("device", device.identifier.as_str());
        let gateway = &self.gateway;
        gateway.publish_status(&device, true).await;
        let record = &device.record;
        self.commands = Some(Commands {
            registration: gateway.connected.register(record.device_id),
            queue: DeviceQueue::new(
                gateway.jetstream.clone(),
                gateway.connected.lookups.clone(),
                &gateway.config.nats.command_stream,
                &gateway.config.nats.subject_prefix,
                record.tenant_id,
                record.device_id,
            ),
        });
    }

    /// Sends the device's next queued command, if there is one; false when the device
    /// is gone.
    async fn send_command(&mut self) -> bool {
        let Some(commands) = self.commands.as_mut() else { return true };
        // Boxed: these futures are large and rare, and every idle connection's task
        // would otherwise carry room for them (see BENCHMARKS.md).
        let Some(message) = Box::pin(commands.queue.next()).await else { return true };
        let command = parse_command(&message.payload).map(|command| {
            let framed = self.frames.decoder().command(&command.payload);
            (command, framed)
        });
        let sent = command.as_ref().ok().and_then(|(_, framed)| framed.as_ref()).map(|(bytes, _)| bytes.clone());
        let delivery = Box::pin(deliver(command, &mut self.writer, message)).await;
        if let (Some(bytes), false) = (sent, matches!(delivery, Delivery::SocketFailed)) {
            let size = bytes.len();
            self.record(Frame { time: now(), bytes, size, outcome: Outcome::Command, reply: None });
        }
        match delivery {
            Delivery::Awaiting(awaiting) => {
                self.awaiting = Some(*awaiting);
                true
            }
            Delivery::Done => {
                if let Some(device) = &self.device {
                    self.gateway.connected.wake(device.record.device_id);
                }
                true
            }
            Delivery::SocketFailed => false,
        }
    }

    fn record(&mut self, frame: Frame) {
        self.archive.record(&self.gateway, self.device.as_ref(), frame);
    }

    /// The end: whatever was left unframed is recorded, the socket closed, the command
    /// wake-ups of this connection forgotten.
    async fn finish(&mut self, shutdown: &CancellationToken) {
        let (bytes, size) = self.frames.decoder_mut().take_frame(true);
        let unframed = self.frames.read_buffer().len() + self.frames.decoder().cut_off;
        if unframed > 0 && !self.broken && !shutdown.is_cancelled() {
            self.gateway.metrics.refused(Refusal::Incomplete);
            if let Some(suppressed) = self.gateway.refusal_log.allow() {
                tracing::info!(
                    bytes = unframed,
                    suppressed,
                    "connection ended inside a frame; nothing of it acknowledged"
                );
            }
        }
        if size > 0 {
            self.record(Frame { time: now(), bytes, size, outcome: Outcome::Incomplete, reply: None });
        }
        self.archive.close(&self.gateway);
        let _ = self.writer.shutdown().await;
        if let (Some(commands), Some(device)) = (&self.commands, &self.device) {
            self.gateway.connected.unregister(device.record.device_id, &commands.registration);
        }
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

    fn origin<'a>(&self, device: Option<&'a Device>, identifier: Option<&'a str>) -> Origin<'a> {
        Origin::new(self.protocol, "tcp", self.connection, device, identifier)
    }

    fn record(&mut self, gateway: &Gateway, device: Option<&Device>, frame: Frame) {
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
            Some(record) => {
                let device = Device { identifier: identifier.to_owned(), record };
                self.record(gateway, Some(&device), frame);
            }
            None if gateway.config.nats.archive => {
                self.publish(gateway, self.origin(None, Some(identifier)), Some(frame))
            }
            None => {}
        }
    }

    /// Frames of a connection that never logged in.
    fn close(&mut self, gateway: &Gateway) {
        self.publish(gateway, self.origin(None, None), None);
    }
}

/// Waits for a command wake-up once the device is logged in; never before.
async fn wake_up(commands: Option<&mut Commands>) -> Option<()> {
    match commands {
        Some(commands) => commands.registration.wake_ups.recv().await,
        None => std::future::pending().await,
    }
}

enum Delivery {
    /// Sent; the device's answer will acknowledge it.
    Awaiting(Box<Awaiting>),
    /// Sent without an answer to wait for, or dropped as unusable; look for the next.
    Done,
    /// The device is gone; the command stays queued.
    SocketFailed,
}

/// Sends one queued command (parsed and framed by the caller) to the device.
async fn deliver(
    command: Result<(Command, Option<(Bytes, bool)>), String>,
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
        return Delivery::Awaiting(Box::new(Awaiting { command_id: command.id, message, since: Instant::now() }));
    }
    if let Err(error) = message.ack().await {
        tracing::warn!(%error, command_id = command.id, "command sent but not removed from the queue");
    }
    Delivery::Done
}
