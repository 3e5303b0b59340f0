-- Derived per position by the processor: the distance in metres from the device's
-- previous valid fix (great-circle; 0 for its first), re-derived when late data lands
-- between two stored fixes; and whether the vehicle was moving (the device's own motion
-- flag when it sends one, else speed above 3 km/h). A trip's distance is the sum of
-- `distance_m` over its rows, or the difference of the device odometer when present.
ALTER TABLE positions ADD COLUMN distance_m double precision, ADD COLUMN moving boolean;

-- Great-circle distance in metres between two WGS 84 points (haversine, mean radius).
CREATE FUNCTION haversine_m(lat1 float8, lon1 float8, lat2 float8, lon2 float8) RETURNS float8
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT 2 * 6371008.8 * asin(least(1, sqrt(
        power(sin(radians(lat2 - lat1) / 2), 2)
        + cos(radians(lat1)) * cos(radians(lat2)) * power(sin(radians(lon2 - lon1) / 2), 2))))
$$;
