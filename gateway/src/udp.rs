//! UDP listeners: one socket per protocol, a codec session per peer address (kept until
//! the peer is silent for the idle timeout), the same login and store-then-acknowledge
//! rules as TCP. Each datagram carries its device's identifier.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use bytes::Bytes;
use fleetgate_codecs::{Event, Protocol, Session};
use tokio::net::UdpSocket;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::archive::{self, Frame, Origin, Outcome};
use crate::connection::now;
use crate::gateway::{Gateway, Login};
use crate::metrics::Refusal;
use crate::registry::DeviceRecord;

/// Publishes waiting for JetStream per socket; beyond it datagrams are dropped unanswered
/// (the device resends), so a stalled JetStream cannot grow memory without bound.
const MAX_IN_FLIGHT: usize = 4096;

struct Peer {
    session: Box<dyn Session>,
    device: Option<(String, DeviceRecord)>,
    last_seen: Instant,
    /// The peer session's id in the archive.
    connection: u64,
}

/// Archives one datagram as the frame of the peer's device (or an unregistered one's).
fn archive(
    gateway: &Gateway,
    protocol: Protocol,
    connection: u64,
    device: Option<&(String, DeviceRecord)>,
    frame: Frame,
) {
    if !gateway.config.nats.archive {
        return;
    }
    let origin = Origin {
        protocol,
        transport: "udp",
        connection,
        device: device.map(|(identifier, record)| (identifier.as_str(), record.tenant_id, record.device_id)),
        identifier: None,
    };
    gateway.archive(origin, &frame);
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
    let socket = Arc::new(socket);
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut peers: HashMap<SocketAddr, Peer> = HashMap::new();
    let mut buffer = vec![0u8; 65_536];
    let mut sweep = tokio::time::interval(idle_timeout.min(Duration::from_secs(60)));
    let counters = gateway.metrics.protocol(protocol);
    loop {
        let (len, peer_addr) = tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = sweep.tick() => {
                peers.retain(|_, peer| peer.last_seen.elapsed() < idle_timeout);
                continue;
            }
            received = socket.recv_from(&mut buffer) => match received {
                Ok(received) => received,
                Err(error) => {
                    tracing::debug!(%error, "udp receive failed");
                    continue;
                }
            },
        };
        if !peers.contains_key(&peer_addr) && peers.len() >= gateway.config.gateway.max_connections {
            gateway.metrics.refused(Refusal::ConnectionCap);
            continue;
        }
        let peer = peers.entry(peer_addr).or_insert_with(|| Peer {
            session: protocol.session(gateway.config.gateway.limits.session_options()),
            device: None,
            last_seen: Instant::now(),
            connection: archive::connection_id(),
        });
        peer.last_seen = Instant::now();
        counters.frames.fetch_add(1, Relaxed);
        let datagram = Bytes::copy_from_slice(&buffer[..len]);
        // The datagram is the frame; its record is written once, by whoever knows how
        // it ended (the publish task when it held positions or a message).
        let mut frame =
            Frame { time: now(), bytes: datagram.clone(), size: len, outcome: Outcome::KeepAlive, reply: None };
        let mut handed_over = false;
        let events = match peer.session.decode_datagram(datagram) {
            Ok(events) => events,
            Err(error) => {
                gateway.metrics.refused(Refusal::Frame);
                if let Some(suppressed) = gateway.refusal_log.allow() {
                    tracing::warn!(peer = %peer_addr, protocol = protocol.name(), offset = error.offset, error = %error.error, suppressed, "datagram refused");
                }
                frame.outcome = Outcome::Refused { offset: error.offset as u64, error: error.error };
                archive(&gateway, protocol, peer.connection, peer.device.as_ref(), frame);
                continue;
            }
        };
        for event in events {
            let reply = match event {
                Event::Login { device, password, .. } => {
                    peer.device = match gateway.login(protocol, &device, password.as_deref()).await {
                        Login::Accepted(record) => Some((device, record)),
                        Login::Refused { .. } => None,
                    };
                    frame.outcome = if peer.device.is_some() { Outcome::Login } else { Outcome::LoginRefused };
                    None
                }
                Event::Positions { mut batch, ack, .. } => {
                    // The session announces a device once; a device registered since
                    // then is looked up again here, at every datagram until it is known.
                    if peer.device.is_none() {
                        if let Some(identifier) = batch.device.as_deref() {
                            if let Login::Accepted(record) = gateway.login(protocol, identifier, None).await {
                                peer.device = Some((identifier.to_owned(), record));
                            }
                        }
                    }
                    // An unknown device gets no answer at all over UDP.
                    frame.outcome = Outcome::LoginRefused;
                    let Some((identifier, record)) = peer.device.clone() else { continue };
                    let Ok(permit) = in_flight.clone().try_acquire_owned() else {
                        gateway.metrics.refused(Refusal::PublishFailed);
                        continue;
                    };
                    batch.received = Some(frame.time);
                    let (gateway, socket) = (gateway.clone(), socket.clone());
                    let (connection, mut frame) = (peer.connection, frame.clone());
                    handed_over = true;
                    tracker.spawn(async move {
                        frame.outcome = Outcome::NotStored(batch.len());
                        if gateway.store_positions(&identifier, &record, &batch).await {
                            let counters = gateway.metrics.protocol(protocol);
                            counters.positions.fetch_add(batch.len() as u64, Relaxed);
                            if socket.send_to(&ack, peer_addr).await.is_ok() {
                                counters.acks.fetch_add(1, Relaxed);
                            }
                            frame.outcome = Outcome::Positions(batch.len());
                            frame.reply = Some(ack);
                        }
                        drop(permit);
                        archive(&gateway, protocol, connection, Some(&(identifier, record)), frame);
                    });
                    None
                }
                Event::Message { message, reply } => {
                    let Some((identifier, record)) = peer.device.clone() else { continue };
                    let (gateway, socket) = (gateway.clone(), socket.clone());
                    let (connection, mut frame) = (peer.connection, frame.clone());
                    handed_over = true;
                    tracker.spawn(async move {
                        frame.outcome = Outcome::Message(message.kind);
                        if gateway.store_message(&identifier, &record, &message, None).await {
                            if let Some(reply) = reply {
                                let _ = socket.send_to(&reply, peer_addr).await;
                                frame.reply = Some(reply);
                            }
                        }
                        archive(&gateway, protocol, connection, Some(&(identifier, record)), frame);
                    });
                    None
                }
                Event::KeepAlive { reply } => reply.filter(|_| peer.device.is_some()),
                Event::Refused { offset, error, reply } => {
                    gateway.metrics.refused(Refusal::Frame);
                    if let Some(suppressed) = gateway.refusal_log.allow() {
                        tracing::warn!(peer = %peer_addr, protocol = protocol.name(), offset, %error, suppressed, "datagram refused");
                    }
                    frame.outcome = Outcome::Refused { offset, error };
                    reply
                }
            };
            if let Some(reply) = reply.filter(|r| !r.is_empty()) {
                let _ = socket.send_to(&reply, peer_addr).await;
                frame.reply = Some(reply);
            }
        }
        if !handed_over {
            archive(&gateway, protocol, peer.connection, peer.device.as_ref(), frame);
        }
    }
}
