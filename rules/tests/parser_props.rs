//! Property tests for the condition parser.

use proptest::prelude::*;
use rules::{CmpOp, Expr, Func, KEYWORDS, Literal, Operand, Span, parse_condition};

fn z() -> Span {
    Span::default()
}

fn ident() -> impl Strategy<Value = String> {
    "[a-z_][a-z0-9_]{0,7}"
}

fn path() -> impl Strategy<Value = String> {
    prop::collection::vec(ident(), 1..4)
        .prop_map(|segs| segs.join("."))
        .prop_filter("single keyword is not a path", |p| {
            !KEYWORDS.contains(&p.as_str())
        })
}

fn literal() -> impl Strategy<Value = Literal> {
    prop_oneof![
        any::<i64>().prop_map(Literal::Int),
        any::<String>().prop_map(Literal::Str),
        any::<bool>().prop_map(Literal::Bool),
        Just(Literal::Absent),
    ]
}

fn operand() -> impl Strategy<Value = Operand> {
    prop_oneof![
        path().prop_map(|p| Operand::Path(p, z())),
        (prop_oneof![Just(Func::Exists), Just(Func::Len)], path())
            .prop_map(|(f, p)| Operand::Call(f, p, z())),
        literal().prop_map(|l| Operand::Lit(l, z())),
        prop::collection::vec(literal(), 0..4)
            .prop_map(|v| Operand::List(v.into_iter().map(|l| (l, z())).collect(), z())),
    ]
}

fn cmp_op() -> impl Strategy<Value = CmpOp> {
    prop_oneof![
        Just(CmpOp::Eq),
        Just(CmpOp::Ne),
        Just(CmpOp::Lt),
        Just(CmpOp::Le),
        Just(CmpOp::Gt),
        Just(CmpOp::Ge),
        Just(CmpOp::In),
        Just(CmpOp::Contains),
        Just(CmpOp::Matches),
    ]
}

fn expr() -> impl Strategy<Value = Expr> {
    let leaf = prop_oneof![
        operand().prop_map(Expr::Operand),
        (operand(), cmp_op(), operand()).prop_map(|(lhs, op, rhs)| Expr::Compare {
            lhs,
            op,
            op_span: z(),
            rhs
        }),
    ];
    leaf.prop_recursive(5, 48, 4, |inner| {
        prop_oneof![
            inner.clone().prop_map(|e| Expr::Not(Box::new(e), z())),
            prop::collection::vec(inner.clone(), 2..4).prop_map(|v| Expr::And(v, z())),
            prop::collection::vec(inner, 2..4).prop_map(|v| Expr::Or(v, z())),
        ]
    })
}

/// Characters that exercise every lexer branch.
fn condition_like() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            Just("tls.certificate.days_left".to_string()),
            Just(" and ".to_string()),
            Just(" or ".to_string()),
            Just("not ".to_string()),
            Just("(".to_string()),
            Just(")".to_string()),
            Just("[".to_string()),
            Just("]".to_string()),
            Just(",".to_string()),
            Just("==".to_string()),
            Just("!".to_string()),
            Just("<=".to_string()),
            Just("-".to_string()),
            Just("\"".to_string()),
            Just("\\".to_string()),
            Just(".".to_string()),
            Just("exists(".to_string()),
            "[0-9]{1,25}",
            any::<char>().prop_map(String::from),
        ],
        0..24,
    )
    .prop_map(|parts| parts.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn print_then_parse_round_trips(e in expr()) {
        let printed = e.to_string();
        let parsed = parse_condition(&printed)
            .map_err(|err| TestCaseError::fail(format!("{printed:?}: {err}")))?;
        prop_assert_eq!(parsed.without_spans(), e.without_spans(), "printed as {:?}", printed);
        prop_assert_eq!(parsed.to_string(), printed);
    }

    #[test]
    fn parser_never_panics_on_arbitrary_input(src in any::<String>()) {
        let _ = parse_condition(&src);
    }

    #[test]
    fn parser_never_panics_on_condition_like_input(src in condition_like()) {
        if let Err(e) = parse_condition(&src) {
            // Error spans always lie inside the input, on character boundaries.
            prop_assert!(e.span.start <= e.span.end && e.span.end <= src.len(), "{:?} {:?}", src, e);
            prop_assert!(src.is_char_boundary(e.span.start), "{:?} {:?}", src, e);
        }
    }
}
