//! The track of a device: how far it went between fixes, whether it moved, and which
//! coordinates can be a position at all.

/// Above this speed (km/h) a device that reports no motion flag counts as moving.
pub const MOVING_SPEED_KMH: f64 = 3.0;

/// Whether the vehicle moves: the device's own motion flag, else its speed above
/// [`MOVING_SPEED_KMH`]; `None` when it sent neither.
pub fn is_moving(motion: Option<bool>, speed: Option<f64>) -> Option<bool> {
    motion.or(speed.map(|speed| speed > MOVING_SPEED_KMH))
}

/// Great-circle distance in metres (haversine, mean Earth radius).
pub fn haversine_m((lat1, lon1): (f64, f64), (lat2, lon2): (f64, f64)) -> f64 {
    let (p1, p2) = (lat1.to_radians(), lat2.to_radians());
    let (dp, dl) = ((lat2 - lat1).to_radians(), (lon2 - lon1).to_radians());
    let a = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * 6_371_008.8 * a.sqrt().min(1.0).asin()
}

/// A latitude within ±90 and a longitude within ±180.
pub fn within_range((lat, lon): (f64, f64)) -> bool {
    (-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon)
}

/// Coordinates that can be a vehicle's position: within range, and not the 0/0 that
/// devices without a fix often send. Only such fixes become live or cross geofences.
pub fn possible((lat, lon): (f64, f64)) -> bool {
    within_range((lat, lon)) && !(lat == 0.0 && lon == 0.0)
}

/// [`possible`] as a Postgres condition on the columns `lat` and `lon` of `table`, for
/// the few reads that must pick such fixes in SQL (`store` tests that the two agree).
pub fn possible_sql(table: &str) -> String {
    format!(
        "({table}.lat BETWEEN -90 AND 90 AND {table}.lon BETWEEN -180 AND 180 AND NOT ({table}.lat = 0 AND {table}.lon = 0))"
    )
}

/// Each valid fix's distance from the previous one, along a device's rows in time
/// order: `previous` is the last valid fix before them (`None`: the device's first),
/// `fixes` the rows' valid fixes (`None` for a row without one). A first fix is 0 m.
pub fn distances(
    previous: Option<(f64, f64)>,
    fixes: impl IntoIterator<Item = Option<(f64, f64)>>,
) -> Vec<Option<f64>> {
    let mut last = previous;
    fixes
        .into_iter()
        .map(|fix| {
            let here = fix?;
            let step = last.map_or(0.0, |there| haversine_m(there, here));
            last = Some(here);
            Some(step)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn motion_comes_from_the_device_flag_else_the_speed() {
        assert_eq!(is_moving(Some(false), Some(50.0)), Some(false));
        assert_eq!(is_moving(Some(true), Some(0.0)), Some(true));
        assert_eq!(is_moving(None, Some(3.5)), Some(true));
        assert_eq!(is_moving(None, Some(2.0)), Some(false));
        assert_eq!(is_moving(None, None), None);
    }

    #[test]
    fn distances_chain_valid_fixes_only() {
        let one_degree = haversine_m((0.0, 0.0), (1.0, 0.0));
        assert!((one_degree - 111_195.08).abs() < 0.1, "{one_degree}");
        let steps = distances(Some((0.0, 0.0)), [Some((1.0, 0.0)), None, Some((1.0, 0.0))]);
        assert_eq!(steps, [Some(haversine_m((0.0, 0.0), (1.0, 0.0))), None, Some(0.0)]);
        assert_eq!(distances(None, [Some((5.0, 5.0))]), [Some(0.0)]);
    }

    #[test]
    fn impossible_coordinates() {
        for coordinates in [(91.0, 0.0), (0.0, 181.0), (0.0, 0.0), (f64::NAN, 1.0)] {
            assert!(!possible(coordinates), "{coordinates:?}");
        }
        assert!(possible((54.7, 25.3)) && possible((-90.0, 180.0)));
    }
}
