package wandb

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// sdkKey is the config key under which W&B clients keep their internals
// (telemetry "t", metric definitions "m", environment "e", versions).
const sdkKey = "_wandb"

// splitConfig turns the config a W&B client sent into Logbook's run config
// and the SDK's internals.
//
// Python sends every top-level key wrapped, {"lr": {"value": 0.01}}, plus
// "_wandb"; JavaScript sends the plain object. A config counts as wrapped
// when every top-level value is an object holding "value" and nothing but
// "value" and "desc". Both become the same plain run config; "_wandb" is
// returned separately so that users never see it among their parameters.
func splitConfig(raw string) (cfg, sdk json.RawMessage, err error) {
	b := bytes.TrimSpace(quoteNonFinite([]byte(raw), false))
	if len(b) == 0 || string(b) == "null" {
		return nil, nil, nil
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(b, &top); err != nil || top == nil {
		return nil, nil, fmt.Errorf("config must be a JSON object encoded as a string: %v", err)
	}
	wrapped := len(top) > 0
	unwrapped := make(map[string]json.RawMessage, len(top))
	for k, v := range top {
		var w map[string]json.RawMessage
		if json.Unmarshal(v, &w) != nil || w == nil {
			wrapped = false
			break
		}
		val, ok := w["value"]
		_, hasDesc := w["desc"]
		if !ok || len(w) > 2 || (len(w) == 2 && !hasDesc) {
			wrapped = false
			break
		}
		unwrapped[k] = val
	}
	if wrapped {
		top = unwrapped
	}
	if v, ok := top[sdkKey]; ok {
		sdk = v
		delete(top, sdkKey)
	}
	if len(top) == 0 {
		return nil, sdk, nil
	}
	cfg, err = json.Marshal(top) // sorted keys
	return cfg, sdk, err
}

// wrapConfig returns a run config in Python's wrapped form, with the SDK's
// internals under "_wandb" (what RunResumeStatus answers).
func wrapConfig(cfg, sdk json.RawMessage) string {
	var top map[string]json.RawMessage
	_ = json.Unmarshal(cfg, &top)
	out := make(map[string]map[string]json.RawMessage, len(top)+1)
	for k, v := range top {
		out[k] = map[string]json.RawMessage{"value": v}
	}
	if len(sdk) > 0 {
		out[sdkKey] = map[string]json.RawMessage{"value": sdk}
	}
	b, _ := json.Marshal(out)
	return string(b)
}
