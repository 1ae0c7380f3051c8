use serde_json::json;

use super::*;

#[test]
fn stats_are_the_bytes_the_server_built_by_hand() {
    let reply = StatsReply {
        edges: 2,
        piles_online: 7,
        records: 1234,
        store: "sqlite".into(),
    };
    let old =
        json!({"records": 1234u64, "store": "sqlite", "piles_online": 7usize, "edges": 2usize});
    assert_eq!(
        serde_json::to_string(&reply).unwrap(),
        serde_json::to_string(&old).unwrap()
    );
}

#[test]
fn a_pile_input_for_a_put_leaves_out_the_pile_no() {
    let put = PileInput {
        pile_no: None,
        enabled: false,
        billing_model: 4,
        name: "Lot B".into(),
    };
    assert_eq!(
        serde_json::to_string(&put).unwrap(),
        r#"{"enabled":false,"billing_model":4,"name":"Lot B"}"#
    );
    let post = PileInput {
        pile_no: Some("32010200000001".into()),
        ..put
    };
    assert_eq!(
        serde_json::to_value(&post).unwrap()["pile_no"],
        "32010200000001"
    );
}

#[test]
fn requests_take_their_defaults_and_refuse_unknown_fields() {
    let input: PileInput = serde_json::from_str("{}").unwrap();
    assert_eq!(
        input,
        PileInput {
            pile_no: None,
            enabled: true,
            billing_model: 1,
            name: String::new(),
        }
    );
    assert!(serde_json::from_str::<PileInput>(r#"{"nmae": "x"}"#).is_err());

    let command: CommandRequest = serde_json::from_str(r#"{"type": "0x56"}"#).unwrap();
    assert_eq!(command.frame_type, "0x56");
    assert_eq!(command.fields, Value::Null);
    assert_eq!(command.timeout_secs, 10);
    assert!(serde_json::from_str::<CommandRequest>(r#"{"type": "0x56", "x": 1}"#).is_err());
}

#[test]
fn order_states_and_origins_are_their_words() {
    for state in [
        OrderState::Starting,
        OrderState::Charging,
        OrderState::Stopping,
        OrderState::Finished,
        OrderState::Failed,
    ] {
        assert_eq!(serde_json::to_value(state).unwrap(), state.as_str());
        assert_eq!(OrderState::parse(state.as_str()), Some(state));
        assert_eq!(state.to_string(), state.as_str());
    }
    for origin in [
        OrderOrigin::Operator,
        OrderOrigin::Pile,
        OrderOrigin::Parallel,
    ] {
        assert_eq!(serde_json::to_value(origin).unwrap(), origin.as_str());
        assert_eq!(OrderOrigin::parse(origin.as_str()), Some(origin));
    }
}

#[test]
fn a_pile_detail_keeps_its_keys_in_order() {
    let detail = PileDetail {
        guns: vec![],
        online: Some(PileLocation {
            edge: "edge-1".into(),
            executor: 3,
            session_id: 77,
        }),
        open_orders: vec![],
        pile: Pile {
            pile_no: "32010200000001".into(),
            enabled: true,
            billing_model: 1,
            name: String::new(),
            last_login_at: None,
        },
        summary: None,
    };
    assert_eq!(
        serde_json::to_string(&detail).unwrap(),
        "{\"guns\":[],\"online\":{\"edge\":\"edge-1\",\"executor\":3,\"session_id\":77},\
         \"open_orders\":[],\"pile\":{\"pile_no\":\"32010200000001\",\"enabled\":true,\
         \"billing_model\":1,\"name\":\"\",\"last_login_at\":null},\"summary\":null}"
    );
}
