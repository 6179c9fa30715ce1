package ui

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	macpv1 "github.com/concord-macp/concord/proto/macp/v1"
)

// timeLayout is how the console shows instants: UTC, to the second.
const timeLayout = "2006-01-02 15:04:05 UTC"

func formatMs(ms int64) string {
	if ms <= 0 {
		return "—"
	}
	return time.UnixMilli(ms).UTC().Format(timeLayout)
}

func stateName(s macpv1.SessionState) string {
	return strings.TrimPrefix(s.String(), "SESSION_STATE_")
}

// prettyJSON indents a JSON document; anything else is returned as is.
func prettyJSON(b []byte) string {
	var out bytes.Buffer
	if json.Indent(&out, b, "", "  ") != nil {
		return string(b)
	}
	return out.String()
}

func formatBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	default:
		return fmt.Sprintf("%d B", n)
	}
}

// maxFieldLen bounds every form field the console reads, except the
// source and rules text areas.
const maxFieldLen = 256

// field reads one form or query value, trimmed, refusing overlong input.
func field(r *http.Request, name string) (string, error) {
	v := strings.TrimSpace(r.FormValue(name))
	if len(v) > maxFieldLen {
		return "", fmt.Errorf("%s is longer than %d bytes", name, maxFieldLen)
	}
	return v, nil
}
