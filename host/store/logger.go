package store

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
)

// badgerLogger passes Badger's warnings and errors to slog and drops its
// info and debug chatter.
type badgerLogger struct{ log *slog.Logger }

func (l badgerLogger) Errorf(format string, args ...any) {
	l.emit(slog.LevelError, format, args)
}

func (l badgerLogger) Warningf(format string, args ...any) {
	l.emit(slog.LevelWarn, format, args)
}

func (badgerLogger) Infof(string, ...any) {}

func (badgerLogger) Debugf(string, ...any) {}

func (l badgerLogger) emit(level slog.Level, format string, args []any) {
	ctx := context.Background()
	if !l.log.Enabled(ctx, level) {
		return
	}
	msg := strings.TrimSpace(fmt.Sprintf(format, args...))
	l.log.Log(ctx, level, msg, "source", "badger")
}
