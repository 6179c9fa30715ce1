# Business-hours-only commitments, for macp.mode.decision.v1.
#
# Commitments (of either polarity) are accepted only inside a weekly
# window in UTC, read from the host clock the runtime passes as
# input.now_unix_ms (uploaded Rego has no clock built-in of its own, so
# the decision is deterministic and replayable). Outside the window the
# commitment is denied with the window and the current UTC time in the
# reason; the session stays open and may commit later.
#
# Parameters, read from the descriptor's rules under "business_hours":
#
#   start_hour  integer 0..23  first hour of the window (default 9)
#   end_hour    integer 1..24  hour the window closes, exclusive (default 17);
#                              end_hour < start_hour is an overnight window
#                              (e.g. 22 -> 6); equal hours mean all day
#   weekdays    [string]       full English day names on which the window
#                              opens (default Monday..Friday); for an
#                              overnight window the day is that of the
#                              current instant in UTC
#
# Malformed parameters deny every commitment with a reason naming the key.
# Every other rules key keeps its built-in meaning: inside the window the
# built-in Decision verdict (data.concord.builtin.decision.verdict) decides.
package concord.custom

mode := "macp.mode.decision.v1"

day_names := ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]

default hours := {}

hours := input.policy.rules.business_hours

default start_hour := 9

start_hour := hours.start_hour

default end_hour := 17

end_hour := hours.end_hour

default weekdays := ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"]

weekdays := hours.weekdays

# --- parameter checks (fail closed) ---

config_error contains "rules.business_hours must be an object" if not is_object(hours)

config_error contains sprintf("rules.business_hours.start_hour must be an integer 0..23, got %v", [start_hour]) if {
	not valid_hour(start_hour, 0, 23)
}

config_error contains sprintf("rules.business_hours.end_hour must be an integer 1..24, got %v", [end_hour]) if {
	not valid_hour(end_hour, 1, 24)
}

config_error contains sprintf("rules.business_hours.weekdays must be a non-empty list of day names (%s)", [concat(", ", day_names)]) if {
	not valid_weekdays
}

valid_hour(h, lo, hi) if {
	is_number(h)
	h == round(h)
	h >= lo
	h <= hi
}

valid_weekdays if {
	is_array(weekdays)
	count(weekdays) > 0
	every d in weekdays {
		d in day_names
	}
}

# --- the clock ---

has_clock if is_number(input.now_unix_ms)

now_ns := input.now_unix_ms * 1000000

weekday := time.weekday(now_ns)

clock := time.clock(now_ns)

open_day if weekday in weekdays

open_hour if {
	start_hour < end_hour
	clock[0] >= start_hour
	clock[0] < end_hour
}

open_hour if {
	start_hour > end_hour
	clock[0] >= start_hour
}

open_hour if {
	start_hour > end_hour
	clock[0] < end_hour
}

open_hour if start_hour == end_hour

window_text := sprintf("on %s, %02d:00-%02d:00 UTC", [concat(", ", weekdays), start_hour, end_hour])

now_text := sprintf("%s %02d:%02d UTC", [weekday, clock[0], clock[1]])

# --- the verdict ---

base := data.concord.builtin.decision.verdict

govern := {"allow": false, "reasons": sort(config_error)} if {
	count(config_error) > 0
} else := {"allow": false, "reasons": ["business hours: the host clock (input.now_unix_ms) is not available, so the time cannot be checked"]} if {
	not has_clock
} else := {"allow": false, "reasons": [sprintf("business hours: commitments are accepted only %s; it is %s", [window_text, now_text])]} if {
	not open_day
} else := {"allow": false, "reasons": [sprintf("business hours: commitments are accepted only %s; it is %s", [window_text, now_text])]} if {
	not open_hour
} else := {"allow": base.allow, "reasons": base.reasons}

# --- shipped tests (run at upload) ---

# 2026-03-02 is a Monday; 2026-03-07 a Saturday.
monday_1030 := 1772447400000

monday_0859 := 1772441940000

monday_1700 := 1772470800000

saturday_1030 := 1772879400000

fx_govern(rules, now, positive_outcome) := v if {
	v := govern with input as {
		"policy": {"policy_id": "policy.example.business-hours", "mode": mode, "schema_version": 3, "rules": rules},
		"session": {"initiator": "boss", "participants": ["alice", "bob"]},
		"sender": "boss",
		"commitment": {"outcome_positive": positive_outcome},
		"state": {"votes": {}},
		"now_unix_ms": now,
	}
}

test_fixture_clock if {
	time.weekday(monday_1030 * 1000000) == "Monday"
	time.clock(monday_1030 * 1000000) == [10, 30, 0]
	time.weekday(saturday_1030 * 1000000) == "Saturday"
}

test_inside_hours_allows if {
	fx_govern({}, monday_1030, true).allow
	fx_govern({}, monday_1030, false).allow
}

test_weekend_denies if {
	v := fx_govern({}, saturday_1030, true)
	not v.allow
	v.reasons == ["business hours: commitments are accepted only on Monday, Tuesday, Wednesday, Thursday, Friday, 09:00-17:00 UTC; it is Saturday 10:30 UTC"]
}

test_before_and_at_closing_deny if {
	not fx_govern({}, monday_0859, true).allow
	v := fx_govern({}, monday_1700, false)
	not v.allow
	contains(v.reasons[0], "it is Monday 17:00 UTC")
}

test_configured_window if {
	rules := {"business_hours": {"start_hour": 8, "end_hour": 18, "weekdays": ["Saturday"]}}
	fx_govern(rules, saturday_1030, true).allow
	not fx_govern(rules, monday_1030, true).allow
}

test_overnight_window if {
	rules := {"business_hours": {"start_hour": 22, "end_hour": 9, "weekdays": ["Monday"]}}
	fx_govern(rules, monday_0859, true).allow
	not fx_govern(rules, monday_1030, true).allow
}

test_missing_clock_denies if {
	v := govern with input as {"policy": {"rules": {}}, "commitment": {"outcome_positive": true}, "state": {}}
	not v.allow
	contains(v.reasons[0], "host clock")
}

test_bad_parameters_fail_closed if {
	v := fx_govern({"business_hours": {"start_hour": 9.5, "end_hour": 25, "weekdays": ["Funday"]}}, monday_1030, true)
	not v.allow
	count(v.reasons) == 3
}

test_builtin_rules_apply_inside_hours if {
	rules := {"voting": {"algorithm": "majority", "threshold": 0.5}}
	v := fx_govern(rules, monday_1030, true)
	not v.allow
	startswith(v.reasons[0], "no decisive ballots")
}
