//! The types that hold a job's content (prompts, answers, opened chunks)
//! implement neither `Debug` nor `Display`, so no `{:?}` or `%` in a log
//! line, an error or a panic message can print them. Their `Debug` is
//! refused at compile time elsewhere; this test proves it stays refused.

use std::fmt::{Debug, Display};
use std::marker::PhantomData;

/// `implements!(T: Trait)`: whether `T` implements `Trait`, decided at
/// compile time (an inherent associated const, applicable only when the
/// bound holds, shadows the trait's default).
macro_rules! implements {
    ($t:ty: $tr:path) => {{
        struct Probe<T: ?Sized>(PhantomData<T>);
        #[allow(dead_code)]
        trait No {
            const YES: bool = false;
        }
        impl<T: ?Sized> No for Probe<T> {}
        #[allow(dead_code)]
        impl<T: ?Sized + $tr> Probe<T> {
            const YES: bool = true;
        }
        <Probe<$t>>::YES
    }};
}

macro_rules! content {
    ($($t:ty),* $(,)?) => {
        [$((stringify!($t), implements!($t: Debug), implements!($t: Display))),*]
    };
}

#[test]
fn content_types_implement_neither_debug_nor_display() {
    let types = content![
        kokon_proto::JobRequest,
        kokon_proto::job::JobInput,
        kokon_proto::ChatMessage,
        kokon_proto::Chunk,
        kokon_engine::Piece,
        kokon_engine::text::StopStep,
        kokon_engine::text::StopMatcher,
        kokon_engine::text::Utf8Assembler,
        kokon_seal::Opened,
    ];
    for (name, debug, display) in types {
        assert!(
            !debug,
            "{name} implements Debug: its content could reach a log"
        );
        assert!(
            !display,
            "{name} implements Display: its content could reach a log"
        );
    }
}

#[test]
fn the_probe_sees_what_is_implemented() {
    assert!(implements!(kokon_proto::Usage: Debug));
    assert!(implements!(kokon_proto::ErrorCode: Debug));
    assert!(implements!(String: Display));
    assert!(!implements!(kokon_proto::Usage: Display));
}
