//! Pod addresses: every pod gets its own 127.x.y.z, so many pods can listen
//! on the same port. Linux routes all of 127.0.0.0/8 to the loopback device.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

/// Hands out addresses from `127.<second>.0.1` upward, skipping .0 and .255.
#[derive(Debug)]
pub struct PodIps {
    second_octet: u8,
    used: BTreeSet<Ipv4Addr>,
    next: u32,
}

impl PodIps {
    pub fn new(second_octet: u8) -> Self {
        Self {
            second_octet,
            used: BTreeSet::new(),
            next: 0,
        }
    }

    /// Marks an address as taken (a pod that already has one keeps it).
    pub fn reserve(&mut self, ip: Ipv4Addr) -> bool {
        self.in_range(ip) && self.used.insert(ip)
    }

    pub fn allocate(&mut self) -> Option<Ipv4Addr> {
        for _ in 0..(1u32 << 16) {
            let n = self.next;
            self.next = (self.next + 1) % (1 << 16);
            let [_, _, c, d] = n.to_be_bytes();
            if d == 0 || d == 255 {
                continue;
            }
            let ip = Ipv4Addr::new(127, self.second_octet, c, d);
            if self.used.insert(ip) {
                return Some(ip);
            }
        }
        None
    }

    pub fn release(&mut self, ip: Ipv4Addr) {
        self.used.remove(&ip);
    }

    fn in_range(&self, ip: Ipv4Addr) -> bool {
        let [a, b, _, d] = ip.octets();
        a == 127 && b == self.second_octet && d != 0 && d != 255
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_distinct_and_loopback() {
        let mut ips = PodIps::new(10);
        let a = ips.allocate().unwrap();
        let b = ips.allocate().unwrap();
        assert_ne!(a, b);
        assert!(a.is_loopback() && b.is_loopback());
        assert_eq!(a, Ipv4Addr::new(127, 10, 0, 1));
    }

    #[test]
    fn reserved_addresses_are_skipped_and_released_ones_reused() {
        let mut ips = PodIps::new(10);
        assert!(ips.reserve(Ipv4Addr::new(127, 10, 0, 1)));
        assert!(!ips.reserve(Ipv4Addr::new(127, 10, 0, 1)));
        assert!(!ips.reserve(Ipv4Addr::new(127, 0, 0, 1)), "out of range");
        assert_eq!(ips.allocate().unwrap(), Ipv4Addr::new(127, 10, 0, 2));
        ips.release(Ipv4Addr::new(127, 10, 0, 1));
        // Allocation moves forward first, so a released address is not handed
        // straight back to a new pod while clients may still hold it.
        assert_eq!(ips.allocate().unwrap(), Ipv4Addr::new(127, 10, 0, 3));
    }

    #[test]
    fn never_hands_out_network_or_broadcast_like_octets() {
        let mut ips = PodIps::new(10);
        for _ in 0..600 {
            let d = ips.allocate().unwrap().octets()[3];
            assert!(d != 0 && d != 255);
        }
    }
}
