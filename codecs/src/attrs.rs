//! The shared attribute vocabulary: the well-known values every codec maps its
//! protocol-specific elements to, with one name and one unit across protocols.
//!
//! The table in `docs/ATTRIBUTES.md` is checked against this list by a test, so the
//! documentation cannot drift from the code.

macro_rules! vocabulary {
    ($( $variant:ident => $name:literal, $unit:literal, $meaning:literal; )*) => {
        /// A well-known attribute name (see `docs/ATTRIBUTES.md`).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[allow(missing_docs)]
        pub enum Attr { $( $variant, )* }

        impl Attr {
            /// Every attribute, in documentation order.
            pub const ALL: &'static [Attr] = &[ $( Attr::$variant, )* ];

            /// The name used as the JSON key in `attrs`.
            pub const fn name(self) -> &'static str {
                match self { $( Attr::$variant => $name, )* }
            }

            /// The unit of the value (`-` for booleans, text and plain numbers).
            pub const fn unit(self) -> &'static str {
                match self { $( Attr::$variant => $unit, )* }
            }

            /// One line on what the value means.
            pub const fn meaning(self) -> &'static str {
                match self { $( Attr::$variant => $meaning, )* }
            }
        }
    };
}

vocabulary! {
    Ignition => "ignition", "bool", "Ignition (engine key) on.";
    Motion => "motion", "bool", "The device reports that the vehicle is moving.";
    PowerVoltage => "power_voltage", "V", "External (vehicle) supply voltage.";
    BatteryVoltage => "battery_voltage", "V", "Internal backup battery voltage.";
    BatteryCurrent => "battery_current", "A", "Internal battery current.";
    BatteryLevel => "battery_level", "%", "Internal battery charge.";
    Odometer => "odometer", "m", "Total distance as counted by the device.";
    TripOdometer => "trip_odometer", "m", "Distance of the current trip as counted by the device.";
    FuelLevel => "fuel_level", "%", "Fuel level as a share of the tank.";
    FuelLitres => "fuel_litres", "l", "Fuel in the tank.";
    FuelUsed => "fuel_used", "l", "Total fuel consumed, as counted by the vehicle (CAN/OBD).";
    GsmSignal => "gsm_signal", "0..5", "Mobile network signal strength on a 0 (none) to 5 (best) scale.";
    Hdop => "hdop", "-", "Horizontal dilution of precision.";
    Pdop => "pdop", "-", "Position dilution of precision.";
    DriverId => "driver_id", "text", "Driver identification (iButton, RFID card, tachograph card).";
    Din1 => "din1", "bool", "Digital input 1.";
    Din2 => "din2", "bool", "Digital input 2.";
    Din3 => "din3", "bool", "Digital input 3.";
    Din4 => "din4", "bool", "Digital input 4.";
    Din5 => "din5", "bool", "Digital input 5.";
    Din6 => "din6", "bool", "Digital input 6.";
    Din7 => "din7", "bool", "Digital input 7.";
    Din8 => "din8", "bool", "Digital input 8.";
    Dout1 => "dout1", "bool", "Digital output 1.";
    Dout2 => "dout2", "bool", "Digital output 2.";
    Dout3 => "dout3", "bool", "Digital output 3.";
    Dout4 => "dout4", "bool", "Digital output 4.";
    Ain1 => "ain1", "V", "Analog input 1.";
    Ain2 => "ain2", "V", "Analog input 2.";
    Ain3 => "ain3", "V", "Analog input 3.";
    Ain4 => "ain4", "V", "Analog input 4.";
    Ain5 => "ain5", "V", "Analog input 5.";
    Ain6 => "ain6", "V", "Analog input 6.";
    Ain7 => "ain7", "V", "Analog input 7.";
    Ain8 => "ain8", "V", "Analog input 8.";
    Temp1 => "temp1", "°C", "Temperature sensor 1.";
    Temp2 => "temp2", "°C", "Temperature sensor 2.";
    Temp3 => "temp3", "°C", "Temperature sensor 3.";
    Temp4 => "temp4", "°C", "Temperature sensor 4.";
    Rpm => "rpm", "1/min", "Engine speed.";
    EngineTemp => "engine_temp", "°C", "Engine temperature.";
    CoolantTemp => "coolant_temp", "°C", "Engine coolant temperature.";
    EngineLoad => "engine_load", "%", "Engine load.";
    Throttle => "throttle", "%", "Throttle (accelerator pedal) position.";
    ObdSpeed => "obd_speed", "km/h", "Vehicle speed read from the vehicle bus (CAN/OBD).";
    AxisX => "axis_x", "mG", "Accelerometer X axis.";
    AxisY => "axis_y", "mG", "Accelerometer Y axis.";
    AxisZ => "axis_z", "mG", "Accelerometer Z axis.";
    Door => "door", "bool", "A door is open.";
    Humidity => "humidity", "%", "Relative humidity (sensor 1).";
    EngineHours => "engine_hours", "h", "Engine (or device) working hours as counted by the device.";
    Armed => "armed", "bool", "The device's own alarm mode (defence) is armed.";
    Charging => "charging", "bool", "The internal battery is charging.";
    Blocked => "blocked", "bool", "An immobiliser output (fuel or power cut) is engaged.";
    Iccid => "iccid", "text", "The SIM card's ICCID.";
    SleepMode => "sleep_mode", "-", "Device power-saving mode as the device numbers it (0 = awake).";
    Operator => "operator", "-", "Mobile network code of the current operator (MCC and MNC).";
    Alarm => "alarm", "text", "An alarm the device raised: sos, power_cut, power_off, power_on, low_power, low_battery, crash, tow, jamming, idle, overspeed, vibration, harsh_acceleration, harsh_braking, harsh_cornering, geofence, geofence_enter, geofence_exit, tampering, removing, door, fall, temperature, unplug, general.";
    Priority => "priority", "-", "Record priority as the device set it (Teltonika: 0 low, 1 high, 2 panic).";
    EventIo => "event_io", "-", "The IO element that triggered the record (Teltonika), 0 for a periodic record.";
    Generation => "generation", "-", "Teltonika codec 16 generation type: 0 on exit, 1 on entrance, 2 on both, 3 monitoring, 4 hysteresis, 5 on change, 6 eventual, 7 periodical.";
}

#[cfg(test)]
mod tests {
    use super::Attr;
    use std::collections::HashSet;

    #[test]
    fn names_are_unique_snake_case() {
        let mut seen = HashSet::new();
        for attr in Attr::ALL {
            assert!(seen.insert(attr.name()), "duplicate name {}", attr.name());
            assert!(attr.name().bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'));
        }
    }

    /// The documentation table lists exactly the vocabulary, in the same order.
    #[test]
    fn documentation_table_matches_vocabulary() {
        let doc = include_str!("../../docs/ATTRIBUTES.md");
        // The vocabulary table comes before the first second-level heading.
        let documented: Vec<(&str, &str)> = doc
            .lines()
            .take_while(|line| !line.starts_with("## "))
            .filter_map(|line| {
                let cells: Vec<&str> = line.split('|').map(str::trim).collect();
                let name = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
                Some((name, *cells.get(2)?))
            })
            .collect();
        let expected: Vec<(&str, &str)> = Attr::ALL.iter().map(|a| (a.name(), a.unit())).collect();
        assert_eq!(documented, expected, "docs/ATTRIBUTES.md is out of date");
    }
}
