//! Protocol version negotiation: the highest version both sides speak wins.

use crate::ProtocolError;

/// Oldest protocol version this build still speaks.
pub const PROTOCOL_VERSION_MIN: u16 = 1;
/// Newest protocol version this build speaks (2 added collector-scheduled runs).
pub const PROTOCOL_VERSION_MAX: u16 = 2;

/// Picks the highest version inside both inclusive ranges.
pub fn negotiate(
    peer_min: u16,
    peer_max: u16,
    ours_min: u16,
    ours_max: u16,
) -> Result<u16, ProtocolError> {
    let hi = peer_max.min(ours_max);
    let lo = peer_min.max(ours_min);
    if peer_min > peer_max || hi < lo {
        return Err(ProtocolError::NoCommonVersion {
            peer_min,
            peer_max,
            ours_min,
            ours_max,
        });
    }
    Ok(hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_highest_common_version() {
        assert_eq!(negotiate(1, 3, 2, 5), Ok(3));
        assert_eq!(negotiate(1, 1, 1, 1), Ok(1));
        assert_eq!(negotiate(4, 9, 1, 6), Ok(6));
    }

    #[test]
    fn disjoint_or_inverted_ranges_fail() {
        assert!(matches!(
            negotiate(3, 4, 1, 2),
            Err(ProtocolError::NoCommonVersion { .. })
        ));
        assert!(negotiate(5, 1, 1, 9).is_err());
    }
}
