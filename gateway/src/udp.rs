//! UDP listeners: one socket per protocol, a codec session per peer address (kept until
//! the peer is silent for the idle timeout), the same login and store-then-acknowledge
//! rules as TCP ([`Gateway::respond`]). Each datagram carries its device's identifier.
//!
//! The socket's loop only decodes: it never waits on JetStream or the database. A login
//! is decided from the registry in memory (an auto-registration runs in the background
//! and the datagram goes unanswered, so the device's resend finds it registered); data
//! is stored and answered by a task per datagram.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use bytes::Bytes;
use fleetgate_codecs::{Event, Protocol, Session, UtcMillis};
use fleetgate_contracts::clock::now;
use tokio::net::UdpSocket;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::archive::{self, Frame, Origin, Outcome};
use crate::gateway::{Device, Gateway, Response, Waiting};
use crate::metrics::Refusal;

/// Datagrams being stored per socket at most; beyond it datagrams are dropped unanswered
/// (the device resends), so a stalled JetStream cannot grow memory without bound.
const MAX_IN_FLIGHT: usize = 4096;

struct Peer {
    session: Box<dyn Session>,
    device: Option<Device>,
    last_seen: Instant,
    /// The peer session's id in the archive.
    connection: u64,
}

/// One UDP socket's shared parts.
struct Socket {
    socket: UdpSocket,
    protocol: Protocol,
    gateway: Arc<Gateway>,
    in_flight: Arc<Semaphore>,
}

impl Socket {
    /// Archives one datagram as the frame of the peer's device (or an unregistered one's).
    fn archive(&self, connection: u64, device: Option<&Device>, frame: &Frame) {
        if self.gateway.config.nats.archive {
            self.gateway.archive(Origin::new(self.protocol, "udp", connection, device, None), frame);
        }
    }

    async fn send(&self, reply: &Option<Bytes>, peer: SocketAddr) -> bool {
        match reply {
            Some(reply) if !reply.is_empty() => self.socket.send_to(reply, peer).await.is_ok(),
            _ => false,
        }
    }
}

/// Serves one UDP socket until `shutdown`.
pub async fn serve(
    socket: UdpSocket,
    protocol: Protocol,
    idle_timeout: Duration,
    gateway: Arc<Gateway>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let socket = Arc::new(Socket {
        socket,
        protocol,
        gateway: gateway.clone(),
        in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
    });
    let mut peers: HashMap<SocketAddr, Peer> = HashMap::new();
    let mut buffer = vec![0u8; 65_536];
    let mut sweep = tokio::time::interval(idle_timeout.min(Duration::from_secs(60)));
    loop {
        let (len, address) = tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = sweep.tick() => {
                peers.retain(|_, peer| peer.last_seen.elapsed() < idle_timeout);
                continue;
            }
            received = socket.socket.recv_from(&mut buffer) => match received {
                Ok(received) => received,
                Err(error) => {
                    tracing::debug!(%error, "udp receive failed");
                    continue;
                }
            },
        };
        if !peers.contains_key(&address) && peers.len() >= gateway.config.gateway.max_connections {
            gateway.metrics.refused(Refusal::ConnectionCap);
            continue;
        }
        let peer = peers.entry(address).or_insert_with(|| Peer {
            session: protocol.session(gateway.config.gateway.limits.session_options()),
            device: None,
            last_seen: Instant::now(),
            connection: archive::connection_id(),
        });
        peer.last_seen = Instant::now();
        gateway.metrics.protocol(protocol).frames.fetch_add(1, Relaxed);
        let datagram = Bytes::copy_from_slice(&buffer[..len]);
        datagram_received(&socket, &tracker, peer, address, datagram).await;
    }
}

/// Decodes one datagram and answers its events: logins from memory here, data and
/// messages stored by a task. The datagram is the frame; its record is written once, by
/// whoever knows how it ended.
async fn datagram_received(
    socket: &Arc<Socket>,
    tracker: &TaskTracker,
    peer: &mut Peer,
    address: SocketAddr,
    datagram: Bytes,
) {
    let (gateway, protocol) = (&socket.gateway, socket.protocol);
    let time = now();
    let mut frame =
        Frame { time, bytes: datagram.clone(), size: datagram.len(), outcome: Outcome::KeepAlive, reply: None };
    peer.session.clock(time);
    let events = match peer.session.decode_datagram(datagram) {
        Ok(events) => events,
        Err(error) => {
            gateway.metrics.refused(Refusal::Frame);
            if let Some(suppressed) = gateway.refusal_log.allow() {
                tracing::warn!(peer = %address, %protocol, offset = error.offset, error = %error.error, suppressed, "datagram refused");
            }
            frame.outcome = Outcome::Refused { offset: error.offset as u64, error: error.error };
            socket.archive(peer.connection, peer.device.as_ref(), &frame);
            return;
        }
    };
    let mut handed_over = false;
    for event in events {
        match event {
            Event::Positions { .. } | Event::Message { .. } => {
                // The session announces a device once; a device registered since then is
                // looked up again here, at every datagram until it is known.
                if peer.device.is_none()
                    && let Event::Positions { batch, .. } = &event
                    && let Some(identifier) = batch.device.as_deref()
                {
                    let login = Event::Login {
                        device: identifier.to_owned(),
                        password: None,
                        accept: Bytes::new(),
                        reject: Bytes::new(),
                    };
                    gateway.respond(protocol, Waiting::Never, &mut peer.device, login, time, None).await;
                    if let Some(device) = &peer.device {
                        // A datagram is decoded before its device is known: the settings
                        // apply from the peer's next datagram on.
                        peer.session.configure(&device.record.settings);
                    }
                }
                // An unknown device gets no answer at all over UDP.
                let Some(device) = peer.device.clone() else {
                    frame.outcome = Outcome::LoginRefused;
                    continue;
                };
                let Ok(permit) = socket.in_flight.clone().try_acquire_owned() else {
                    gateway.metrics.refused(Refusal::PublishFailed);
                    continue;
                };
                handed_over = true;
                let (socket, connection, mut frame) = (socket.clone(), peer.connection, frame.clone());
                tracker.spawn(async move {
                    let response = store(&socket, device.clone(), event, time, address).await;
                    drop(permit);
                    frame.outcome = response.outcome;
                    frame.reply = response.reply;
                    socket.archive(connection, Some(&device), &frame);
                });
            }
            event => {
                let keepalive = matches!(event, Event::KeepAlive { .. });
                let response = gateway.respond(protocol, Waiting::Never, &mut peer.device, event, time, None).await;
                frame.outcome = response.outcome;
                // A keep-alive is answered only for a known device.
                if !(keepalive && peer.device.is_none()) && socket.send(&response.reply, address).await {
                    frame.reply = response.reply;
                }
            }
        }
    }
    if !handed_over {
        socket.archive(peer.connection, peer.device.as_ref(), &frame);
    }
}

/// Stores one datagram's data (or message) and answers the peer once it is stored.
async fn store(socket: &Socket, device: Device, event: Event, time: UtcMillis, address: SocketAddr) -> Response {
    let mut device = Some(device);
    let protocol = socket.protocol;
    let response = socket.gateway.respond(protocol, Waiting::Never, &mut device, event, time, None).await;
    if !response.close
        && socket.send(&response.reply, address).await
        && matches!(response.outcome, Outcome::Positions(_))
    {
        socket.gateway.metrics.protocol(protocol).acks.fetch_add(1, Relaxed);
    }
    response
}
