//! Geofences: circles and polygons a tenant draws, and whether a fix is inside one.
//! Polygons are in degrees (latitude, longitude) and may cross the antimeridian: when an
//! edge spans more than 180 degrees of longitude the polygon is taken the short way round,
//! in longitudes shifted to 0..360. A point on an edge or a vertex is inside.

use serde::{Deserialize, Serialize};

use fleetgate_codecs::time::UtcMillis;

use crate::track::haversine_m;

/// One geofence of a tenant.
#[derive(Debug, Clone, PartialEq)]
pub struct Fence {
    /// `geofences.id`.
    pub id: i64,
    /// Its name.
    pub name: String,
    /// Its shape.
    pub shape: Shape,
}

/// One crossing of a geofence's border.
#[derive(Debug, Clone, PartialEq)]
pub struct Crossing {
    /// The fix inside (enter) or outside (exit) after the crossing.
    pub time: UtcMillis,
    /// Where.
    pub fix: (f64, f64),
    /// True when entering.
    pub enter: bool,
    /// The geofence.
    pub fence: i64,
    /// Its name.
    pub name: String,
}

/// The crossings between consecutive `fixes` (time order, possible fixes only): one per
/// geofence whose inside the vehicle entered or left between two fixes, at the second.
pub fn crossings(fences: &[Fence], fixes: &[(UtcMillis, (f64, f64))]) -> Vec<Crossing> {
    let mut found = Vec::new();
    for pair in fixes.windows(2) {
        let ((_, (lat0, lon0)), (time, (lat, lon))) = (pair[0], pair[1]);
        for fence in fences {
            let (was, is) = (fence.shape.contains(lat0, lon0), fence.shape.contains(lat, lon));
            if was != is {
                found.push(Crossing { time, fix: (lat, lon), enter: is, fence: fence.id, name: fence.name.clone() });
            }
        }
    }
    found
}

/// A geofence's shape, as the API takes and stores it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Shape {
    /// Everything within `radius_m` metres of the centre.
    Circle {
        /// Centre latitude.
        lat: f64,
        /// Centre longitude.
        lon: f64,
        /// Metres.
        radius_m: f64,
    },
    /// A simple polygon: its vertices as `[lat, lon]`, not closed (the last joins the first).
    Polygon(Vec<[f64; 2]>),
}

/// Most vertices a polygon may have.
pub const MAX_VERTICES: usize = 1000;

impl Shape {
    /// Why the shape is unusable, if it is.
    pub fn check(&self) -> Result<(), String> {
        let possible = |lat: f64, lon: f64| crate::track::within_range((lat, lon));
        match self {
            Shape::Circle { lat, lon, radius_m } => {
                if !possible(*lat, *lon) {
                    return Err("the circle's centre must be a latitude within ±90 and a longitude within ±180".into());
                }
                if !(1.0..=100_000.0).contains(radius_m) {
                    return Err("radius_m must be 1 to 100000".into());
                }
            }
            Shape::Polygon(vertices) => {
                if !(3..=MAX_VERTICES).contains(&vertices.len()) {
                    return Err(format!("a polygon has 3 to {MAX_VERTICES} vertices"));
                }
                if let Some([lat, lon]) = vertices.iter().find(|[lat, lon]| !possible(*lat, *lon)) {
                    return Err(format!(
                        "vertex [{lat}, {lon}] is not a latitude within ±90 and a longitude within ±180"
                    ));
                }
            }
        }
        Ok(())
    }

    /// True when the fix is inside (or on the border).
    pub fn contains(&self, lat: f64, lon: f64) -> bool {
        match self {
            Shape::Circle { lat: clat, lon: clon, radius_m } => haversine_m((*clat, *clon), (lat, lon)) <= *radius_m,
            Shape::Polygon(vertices) => polygon_contains(vertices, lat, lon),
        }
    }
}

fn polygon_contains(vertices: &[[f64; 2]], lat: f64, lon: f64) -> bool {
    let crosses = vertices.iter().zip(vertices.iter().cycle().skip(1)).any(|(a, b)| (a[1] - b[1]).abs() > 180.0);
    let shift = |lon: f64| if crosses && lon < 0.0 { lon + 360.0 } else { lon };
    let (x, y) = (shift(lon), lat);
    let mut inside = false;
    for (a, b) in vertices.iter().zip(vertices.iter().cycle().skip(1)) {
        let (ax, ay, bx, by) = (shift(a[1]), a[0], shift(b[1]), b[0]);
        // On the edge: inside.
        let cross = (bx - ax) * (y - ay) - (by - ay) * (x - ax);
        let within = x >= ax.min(bx) && x <= ax.max(bx) && y >= ay.min(by) && y <= ay.max(by);
        if cross.abs() < 1e-12 && within {
            return true;
        }
        // Ray casting towards +x.
        if (ay > y) != (by > y) && x < (bx - ax) * (y - ay) / (by - ay) + ax {
            inside = !inside;
        }
    }
    inside
}

#[cfg(test)]
mod tests {
    use super::*;

    fn square() -> Shape {
        Shape::Polygon(vec![[0.0, 0.0], [0.0, 1.0], [1.0, 1.0], [1.0, 0.0]])
    }

    #[test]
    fn inside_outside_and_on_the_edges() {
        let square = square();
        assert!(square.contains(0.5, 0.5));
        assert!(!square.contains(1.5, 0.5));
        assert!(!square.contains(0.5, -0.0001));
        assert!(square.contains(0.0, 0.5), "on an edge");
        assert!(square.contains(1.0, 1.0), "on a vertex");
        assert!(square.contains(0.5, 1.0), "on the far edge");
        assert!(!square.contains(0.5, 1.000001));
    }

    #[test]
    fn a_concave_polygon_keeps_its_notch_out() {
        // A U: the notch between the arms is outside.
        let u = Shape::Polygon(vec![
            [0.0, 0.0],
            [0.0, 3.0],
            [3.0, 3.0],
            [3.0, 2.0],
            [1.0, 2.0],
            [1.0, 1.0],
            [3.0, 1.0],
            [3.0, 0.0],
        ]);
        assert!(u.contains(0.5, 1.5));
        assert!(u.contains(2.0, 0.5));
        assert!(!u.contains(2.0, 1.5), "in the notch");
    }

    #[test]
    fn polygons_across_the_antimeridian_are_taken_the_short_way() {
        // Fiji-ish: from 179 E to 179 W.
        let fence = Shape::Polygon(vec![[-17.0, 179.0], [-17.0, -179.0], [-19.0, -179.0], [-19.0, 179.0]]);
        assert!(fence.contains(-18.0, 179.5));
        assert!(fence.contains(-18.0, -179.5));
        assert!(fence.contains(-18.0, 180.0));
        assert!(!fence.contains(-18.0, 178.5));
        assert!(!fence.contains(-18.0, -178.5));
        assert!(!fence.contains(-18.0, 0.0), "not the long way round");
    }

    #[test]
    fn circles_measure_on_the_sphere_and_shapes_are_checked() {
        let circle = Shape::Circle { lat: 54.6872, lon: 25.2797, radius_m: 500.0 };
        assert!(circle.contains(54.6872, 25.2797));
        assert!(circle.contains(54.6912, 25.2797), "about 445 m north");
        assert!(!circle.contains(54.6922, 25.2797), "about 556 m north");
        let across = Shape::Circle { lat: 0.0, lon: 179.9999, radius_m: 100.0 };
        assert!(across.contains(0.0, -179.9995), "the circle reaches across the antimeridian");
        assert!(Shape::Polygon(vec![[0.0, 0.0], [1.0, 1.0]]).check().is_err());
        assert!(Shape::Circle { lat: 91.0, lon: 0.0, radius_m: 10.0 }.check().is_err());
        assert!(Shape::Circle { lat: 0.0, lon: 0.0, radius_m: 0.0 }.check().is_err());
        assert!(square().check().is_ok());
    }
}
