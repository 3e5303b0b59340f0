//! Shared inputs for the criterion benches in `benches/benches/` (frames built with the
//! codecs' own encoder, so every bench decodes the same bytes).
