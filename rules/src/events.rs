//! The events a device's positions give one by one: ignition on/off, moving start/stop,
//! overspeed (devices without a minimum duration; see [`crate::overspeed`]), power cut,
//! low battery, SOS and other alarms. Each fires at the position where the value
//! changes from the previous position's, so a caller that derives a window of positions
//! again (late data, reprocessing) gets the events that positions in order would have.

use crate::track::is_moving;

/// The kinds this rule derives; deriving a window again replaces exactly these.
pub const KINDS: [&str; 9] = [
    "ignition_on",
    "ignition_off",
    "moving_start",
    "moving_stop",
    "overspeed",
    "power_cut",
    "low_battery",
    "alarm",
    "sos",
];

/// Thresholds the rule uses.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// External power below this (volts) after being above it: `power_cut`.
    pub power_cut_voltage: f64,
    /// Backup battery below this (volts) after being above it: `low_battery`.
    pub low_battery_voltage: f64,
}

/// What the rule reads of one position.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct State {
    /// `attrs.motion`.
    pub motion: Option<bool>,
    /// `attrs.ignition`.
    pub ignition: Option<bool>,
    /// km/h.
    pub speed: Option<f64>,
    /// `attrs.power_voltage`.
    pub power: Option<f64>,
    /// `attrs.battery_voltage`.
    pub battery: Option<f64>,
    /// `attrs.alarm`.
    pub alarm: Option<String>,
}

impl State {
    /// Whether the vehicle moves ([`is_moving`]).
    pub fn moving(&self) -> Option<bool> {
        is_moving(self.motion, self.speed)
    }
}

/// One event: its kind and `details` (JSON).
#[derive(Debug, Clone, PartialEq)]
pub struct Fired {
    /// The kind, one of [`KINDS`].
    pub kind: &'static str,
    /// `details` as JSON text.
    pub details: String,
}

fn fired(kind: &'static str, details: String) -> Fired {
    Fired { kind, details }
}

/// What fires at `row` after `previous` (`None` for a device's first position).
/// `speed_limit` is the device's, for devices without a minimum overspeed duration.
pub fn at(row: &State, previous: Option<&State>, speed_limit: Option<f64>, thresholds: Thresholds) -> Vec<Fired> {
    let mut events = Vec::new();
    let none = State::default();
    let before = previous.unwrap_or(&none);
    match (row.ignition, before.ignition) {
        (Some(true), Some(false)) => events.push(fired("ignition_on", "{}".into())),
        (Some(false), Some(true)) => events.push(fired("ignition_off", "{}".into())),
        _ => {}
    }
    match (row.moving(), before.moving()) {
        (Some(true), Some(false)) => events.push(fired("moving_start", "{}".into())),
        (Some(false), Some(true)) => events.push(fired("moving_stop", "{}".into())),
        _ => {}
    }
    if let (Some(speed), Some(limit)) = (row.speed, speed_limit)
        && speed > limit
        && !before.speed.is_some_and(|s| s > limit)
    {
        events.push(fired("overspeed", serde_json::json!({"speed": speed, "limit": limit}).to_string()));
    }
    if let (Some(v), Some(b)) = (row.power, before.power)
        && v < thresholds.power_cut_voltage
        && b >= thresholds.power_cut_voltage
    {
        events.push(fired("power_cut", serde_json::json!({"voltage": v}).to_string()));
    }
    if let (Some(v), Some(b)) = (row.battery, before.battery)
        && v < thresholds.low_battery_voltage
        && b >= thresholds.low_battery_voltage
    {
        events.push(fired("low_battery", serde_json::json!({"voltage": v}).to_string()));
    }
    match row.alarm.as_deref() {
        Some("sos") if before.alarm.as_deref() != Some("sos") => events.push(fired("sos", "{}".into())),
        Some(alarm) if alarm != "sos" && before.alarm.as_deref() != Some(alarm) => {
            events.push(fired("alarm", serde_json::json!({"alarm": alarm}).to_string()));
        }
        _ => {}
    }
    events
}

/// The events of `rows` (one device, time order) after `previous`: for each row, what
/// fires at it ([`at`]), with the row's index.
pub fn along<'a>(
    previous: Option<&'a State>,
    rows: impl IntoIterator<Item = &'a State>,
    speed_limit: Option<f64>,
    thresholds: Thresholds,
) -> Vec<(usize, Fired)> {
    let mut found = Vec::new();
    let mut before = previous;
    for (index, row) in rows.into_iter().enumerate() {
        found.extend(at(row, before, speed_limit, thresholds).into_iter().map(|event| (index, event)));
        before = Some(row);
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    const THRESHOLDS: Thresholds = Thresholds { power_cut_voltage: 3.0, low_battery_voltage: 3.4 };

    fn kinds(events: &[(usize, Fired)]) -> Vec<(usize, &'static str)> {
        events.iter().map(|(i, e)| (*i, e.kind)).collect()
    }

    #[test]
    fn transitions_fire_where_values_change() {
        let row = |ignition: bool, speed: f64, power: f64, alarm: Option<&str>| State {
            ignition: Some(ignition),
            speed: Some(speed),
            power: Some(power),
            alarm: alarm.map(str::to_owned),
            ..State::default()
        };
        let rows = [
            row(false, 0.0, 12.0, None),
            row(true, 0.0, 12.0, None),
            row(true, 60.0, 12.0, None),
            row(true, 95.0, 2.0, Some("sos")),
            row(true, 96.0, 2.0, Some("sos")),
            row(false, 0.0, 12.0, Some("tow")),
        ];
        let events = along(None, &rows, Some(90.0), THRESHOLDS);
        assert_eq!(
            kinds(&events),
            [
                (1, "ignition_on"),
                (2, "moving_start"),
                (3, "overspeed"),
                (3, "power_cut"),
                (3, "sos"),
                (5, "ignition_off"),
                (5, "moving_stop"),
                (5, "alarm")
            ]
        );
        assert_eq!(events[2].1.details, r#"{"speed":95.0,"limit":90.0}"#);
        // The same rows after a context row that already had the ignition on: the first
        // row turns it off.
        let context = row(true, 0.0, 12.0, None);
        assert_eq!(kinds(&along(Some(&context), &rows[..1], None, THRESHOLDS)), [(0, "ignition_off")]);
    }
}
