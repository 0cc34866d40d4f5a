//! Property tests of the control protocol's frames: every request survives an encode and a
//! decode, and no byte stream makes the reader panic or allocate past its limit.
//!
//! Bounded for CI; the open-ended search is the fuzz target `control` (`fuzz/`).

use proptest::prelude::*;

use crate::control::{
    ErrorKind, ErrorReply, FrameError, Hello, MAX_REQUEST, Reply, Request, encode, read_frame,
};

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 64,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn request() -> impl Strategy<Value = Request> {
    let name = any::<String>;
    prop_oneof![
        prop::option::of(name()).prop_map(|service| Request::Status { service }),
        name().prop_map(|service| Request::Start { service }),
        name().prop_map(|service| Request::Stop { service }),
        name().prop_map(|service| Request::Restart { service }),
        Just(Request::Down),
        (name(), prop::option::of(any::<u64>()))
            .prop_map(|(service, sample_ms)| Request::Diagnose { service, sample_ms }),
        Just(Request::Reload),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn requests_round_trip_through_a_stream_of_frames(requests in prop::collection::vec(request(), 0..6)) {
        let mut stream = encode(&Hello { version: 1, client: "props".into() }).expect("encode");
        for request in &requests {
            stream.extend(encode(request).expect("encode"));
        }
        let mut reader = &stream[..];
        let hello: Hello =
            serde_json::from_slice(&read_frame(&mut reader, MAX_REQUEST).expect("hello")).expect("json");
        prop_assert_eq!(hello.version, 1);
        for request in &requests {
            let payload = read_frame(&mut reader, MAX_REQUEST).expect("frame");
            let back: Request = serde_json::from_slice(&payload).expect("json");
            prop_assert_eq!(&back, request);
        }
        prop_assert!(matches!(read_frame(&mut reader, MAX_REQUEST), Err(FrameError::Closed)));
    }

    #[test]
    fn error_replies_round_trip(message in any::<String>(), diagnostics in prop::collection::vec(any::<String>(), 0..3)) {
        let reply = Reply::Error(ErrorReply { kind: ErrorKind::Config, message, diagnostics });
        let frame = encode(&reply).expect("encode");
        let back: Reply = serde_json::from_slice(&frame[4..]).expect("json");
        prop_assert_eq!(back, reply);
    }

    #[test]
    fn any_bytes_are_frames_an_error_or_the_end(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let mut reader = &bytes[..];
        let mut frames = 0;
        loop {
            match read_frame(&mut reader, MAX_REQUEST) {
                Ok(payload) => {
                    prop_assert!(payload.len() <= MAX_REQUEST);
                    let _ = serde_json::from_slice::<Request>(&payload);
                    frames += 1;
                }
                Err(FrameError::Closed | FrameError::TooLarge { .. } | FrameError::Io(_)) => break,
                Err(other) => prop_assert!(false, "{}", other),
            }
        }
        // Each frame is at least its 4-byte header.
        prop_assert!(frames <= bytes.len() / 4);
    }

    #[test]
    fn a_header_past_the_limit_is_refused_whatever_follows(
        len in (MAX_REQUEST as u32 + 1)..=u32::MAX,
        tail in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut bytes = len.to_be_bytes().to_vec();
        bytes.extend(tail);
        let refused = matches!(
            read_frame(&mut &bytes[..], MAX_REQUEST),
            Err(FrameError::TooLarge { len: l, limit }) if l == len as usize && limit == MAX_REQUEST
        );
        prop_assert!(refused);
    }
}
