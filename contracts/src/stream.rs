//! The NATS contract between the roles: the JetStream streams, the subjects, and the
//! message id that makes a resent frame a duplicate. What each message holds is
//! [`crate::messages`].
//!
//! Subjects (`P` is `nats.subject_prefix`):
//! - `P.pos.{tenant_id}.{device_id}`: the positions of one frame, one message.
//! - `P.msg.{tenant_id}.{device_id}`: a non-position message (command response, text).
//! - `P.status.{tenant_id}.{device_id}`: the device came online or went offline.
//! - `P.cmd.{tenant_id}.{device_id}` (stream `nats.command_stream`, work queue):
//!   commands waiting for their device.
//! - `P.registry` (core NATS, not stored): a device was created, changed or deleted.
//! - `P.dead.{pos,msg,status}` (stream `{stream}_DEAD`): messages the processor could
//!   not read, with the reason in the `Fleetgate-Reason` header.
//! - `P.raw.records` (stream `{stream}_RAW`): the raw frame archive, batches of
//!   [`crate::archive::Record`]s (one JSON object per line), one record per frame
//!   received or command sent.
//! - `P.jobs.report` (stream `{stream}_JOBS`, work queue): background report jobs' ids.
//! - `P.live.{tenant_id}.{device_id}` (core NATS): the processor moved a live position.
//! - `P.event.{tenant_id}.{device_id}` (core NATS): the processor derived an event.
//! - `P.api.invalidate` (core NATS): an API process changed keys, users or devices.
//!
//! Tenant and device come first so consumers can be partitioned by subject filter.

use std::time::Duration;

use async_nats::jetstream::{self, stream};

use crate::config::NatsConfig;
use crate::ids::{DeviceId, TenantId};

/// Subject of a frame's positions.
pub fn positions_subject(prefix: &str, tenant: TenantId, device: DeviceId) -> String {
    format!("{prefix}.pos.{tenant}.{device}")
}

/// Subject of a device message.
pub fn message_subject(prefix: &str, tenant: TenantId, device: DeviceId) -> String {
    format!("{prefix}.msg.{tenant}.{device}")
}

/// Subject of connection status changes.
pub fn status_subject(prefix: &str, tenant: TenantId, device: DeviceId) -> String {
    format!("{prefix}.status.{tenant}.{device}")
}

/// Subject of the commands waiting for one device.
pub fn command_subject(prefix: &str, tenant: TenantId, device: DeviceId) -> String {
    format!("{prefix}.cmd.{tenant}.{device}")
}

/// Subject every gateway watches (core NATS) to wake the connection a command is for.
pub fn commands_wildcard(prefix: &str) -> String {
    format!("{prefix}.cmd.>")
}

/// Subject of cache invalidations between API processes (core NATS).
pub fn invalidate_subject(prefix: &str) -> String {
    format!("{prefix}.api.invalidate")
}

/// The device (tenant, device) a per-device subject (`P.kind.tenant.device`) names.
pub fn device_of_subject(subject: &str) -> Option<(TenantId, DeviceId)> {
    let mut tokens = subject.rsplit('.');
    let device = tokens.next()?.parse().ok()?;
    let tenant = tokens.next()?.parse().ok()?;
    Some((tenant, device))
}

/// Subject of registry change notifications (core NATS).
pub fn registry_subject(prefix: &str) -> String {
    format!("{prefix}.registry")
}

/// Subject a message the processor could not read goes to; `kind` is the second token
/// of its original subject (`pos`, `msg`, `status`).
pub fn dead_letter_subject(prefix: &str, kind: &str) -> String {
    format!("{prefix}.dead.{kind}")
}

/// Name of the dead-letter stream.
pub fn dead_letter_stream(config: &NatsConfig) -> String {
    format!("{}_DEAD", config.stream)
}

/// Subject of the archive: batches of records, one JSON object per line.
pub fn archive_subject(prefix: &str) -> String {
    format!("{prefix}.raw.records")
}

/// Subject of background report jobs (the job's id).
pub fn report_jobs_subject(prefix: &str) -> String {
    format!("{prefix}.jobs.report")
}

/// Name of the background report jobs' work-queue stream.
pub fn report_jobs_stream(config: &NatsConfig) -> String {
    format!("{}_JOBS", config.stream)
}

/// Name of the raw frame archive stream.
pub fn archive_stream(config: &NatsConfig) -> String {
    format!("{}_RAW", config.stream)
}

/// Subject of live position updates for streaming clients (core NATS); `device` may be
/// `*` to subscribe to a whole tenant.
pub fn live_subject(prefix: &str, tenant: TenantId, device: &dyn std::fmt::Display) -> String {
    format!("{prefix}.live.{tenant}.{device}")
}

/// Subject of derived events for streaming clients (core NATS); `device` may be `*`.
pub fn event_subject(prefix: &str, tenant: TenantId, device: &dyn std::fmt::Display) -> String {
    format!("{prefix}.event.{tenant}.{device}")
}

/// The message id of a frame: the device and a checksum of the frame's bytes. A device
/// that resends an unacknowledged frame sends the same bytes, so JetStream's duplicate
/// window drops the second copy.
pub fn frame_message_id(device: &str, frame: &[u8]) -> String {
    const CRC64: crc::Crc<u64> = crc::Crc::<u64>::new(&crc::CRC_64_XZ);
    format!("{device}:{}:{:016x}", frame.len(), CRC64.checksum(frame))
}

/// Creates the stream, or updates its limits to the configuration's.
pub async fn ensure_stream(js: &jetstream::Context, config: &NatsConfig) -> Result<(), async_nats::Error> {
    let prefix = &config.subject_prefix;
    let stream_config = stream::Config {
        name: config.stream.clone(),
        subjects: vec![format!("{prefix}.pos.>"), format!("{prefix}.msg.>"), format!("{prefix}.status.>")],
        storage: stream::StorageType::File,
        retention: stream::RetentionPolicy::Limits,
        max_age: Duration::from_secs(config.max_age_days * 86_400),
        max_bytes: config.max_bytes,
        num_replicas: config.replicas,
        duplicate_window: Duration::from_secs(config.duplicate_window_s),
        ..Default::default()
    };
    let command_config = stream::Config {
        name: config.command_stream.clone(),
        subjects: vec![format!("{prefix}.cmd.>")],
        storage: stream::StorageType::File,
        // A command leaves the queue once its device took it.
        retention: stream::RetentionPolicy::WorkQueue,
        max_age: Duration::from_secs(config.command_max_age_days * 86_400),
        num_replicas: config.replicas,
        ..Default::default()
    };
    let dead_letter_config = stream::Config {
        name: dead_letter_stream(config),
        subjects: vec![format!("{prefix}.dead.>")],
        storage: stream::StorageType::File,
        retention: stream::RetentionPolicy::Limits,
        // Kept long enough for someone to look, fix the cause and replay them.
        max_age: Duration::from_secs(30 * 86_400),
        num_replicas: config.replicas,
        ..Default::default()
    };
    let archive_config = stream::Config {
        name: archive_stream(config),
        subjects: vec![format!("{prefix}.raw.>")],
        storage: stream::StorageType::File,
        retention: stream::RetentionPolicy::Limits,
        max_age: Duration::from_secs(config.archive_max_age_days * 86_400),
        max_bytes: config.archive_max_bytes,
        num_replicas: config.replicas,
        ..Default::default()
    };
    let jobs_config = stream::Config {
        name: report_jobs_stream(config),
        subjects: vec![report_jobs_subject(prefix)],
        storage: stream::StorageType::File,
        // A job leaves the queue once an API process finished it.
        retention: stream::RetentionPolicy::WorkQueue,
        max_age: Duration::from_secs(86_400),
        num_replicas: config.replicas,
        ..Default::default()
    };
    for config in [stream_config, command_config, dead_letter_config, archive_config, jobs_config] {
        match js.get_stream(&config.name).await {
            Ok(_) => {
                js.update_stream(config).await?;
            }
            Err(_) => {
                js.create_stream(config).await?;
            }
        }
    }
    Ok(())
}

/// Every stream [`ensure_stream`] makes for `config`.
pub fn stream_names(config: &NatsConfig) -> [String; 5] {
    [
        config.stream.clone(),
        config.command_stream.clone(),
        dead_letter_stream(config),
        archive_stream(config),
        report_jobs_stream(config),
    ]
}

/// Deletes every stream of `config` (tests and benches clean up after themselves this
/// way); a stream that is not there is fine.
pub async fn delete_streams(js: &jetstream::Context, config: &NatsConfig) {
    for name in stream_names(config) {
        let _ = js.delete_stream(name).await;
    }
}

/// [`delete_streams`] from synchronous code (a test harness's `Drop`), on a thread and
/// runtime of its own.
pub fn delete_streams_blocking(config: &NatsConfig) {
    let config = config.clone();
    let cleanup = std::thread::spawn(move || {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else { return };
        runtime.block_on(async {
            if let Ok(client) = async_nats::connect(config.url.as_str()).await {
                delete_streams(&jetstream::new(client), &config).await;
            }
        });
    });
    let _ = cleanup.join();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_device_subjects_name_their_device() {
        let subject = positions_subject("fg", TenantId(3), DeviceId(7));
        assert_eq!(subject, "fg.pos.3.7");
        assert_eq!(device_of_subject(&subject), Some((TenantId(3), DeviceId(7))));
        assert_eq!(device_of_subject("fg.registry"), None);
        assert_eq!(live_subject("fg", TenantId(3), &"*"), "fg.live.3.*");
    }
}
