//! The control socket's frames, as the supervisor and the client read them: whatever a peer
//! sends is a message, an error, or the end; nothing allocates past the frame limit.
#![no_main]

use hangwatch_protocol::control::{
    FrameError, Hello, MAX_REQUEST, Reply, Request, encode, read_frame,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // A stream of frames, read as the supervisor does: a hello, then requests.
    let mut stream = data;
    let mut first = true;
    loop {
        match read_frame(&mut stream, MAX_REQUEST) {
            Ok(payload) => {
                assert!(payload.len() <= MAX_REQUEST);
                if first {
                    let _ = serde_json::from_slice::<Hello>(&payload);
                    first = false;
                } else if let Ok(request) = serde_json::from_slice::<Request>(&payload) {
                    // What decodes, encodes back to the same request.
                    let frame = encode(&request).expect("encode");
                    let again = read_frame(&mut &frame[..], MAX_REQUEST).expect("own frame");
                    let back: Request = serde_json::from_slice(&again).expect("own request");
                    assert_eq!(back, request);
                }
            }
            Err(FrameError::Closed | FrameError::TooLarge { .. } | FrameError::Io(_)) => break,
            Err(err) => panic!("read_frame: {err}"),
        }
    }
    // The whole input as a reply's payload, as the client reads one.
    let _ = serde_json::from_slice::<Reply>(data);
});
