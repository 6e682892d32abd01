//! The conformance suite against chaski-mio's blocking node, IPv4 and IPv6.

#[allow(unused_imports)]
use chaski_tests::mio_rt;

chaski_tests::conformance!(mio_rt::Mio);
