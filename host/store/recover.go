package store

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
)

// removeInterruptedLogs deletes the empty value-log and write-ahead-log
// files a kill left in dir. Badger creates such a file, sizes it and writes
// its header in separate steps, and creates a new value log at every open;
// a process killed between the first two steps leaves a file of zero bytes,
// which Badger then refuses to open ("Open existing file … Create a new
// file"), so the store could never start again. A file of zero bytes holds
// no entry, not even its header, so nothing can refer to it.
func removeInterruptedLogs(dir string, log *slog.Logger) error {
	entries, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("list %s: %w", dir, err)
	}
	for _, e := range entries {
		name := e.Name()
		if !e.Type().IsRegular() || (!strings.HasSuffix(name, ".vlog") && !strings.HasSuffix(name, ".mem")) {
			continue
		}
		info, err := e.Info()
		if err != nil {
			return fmt.Errorf("stat %s: %w", name, err)
		}
		if info.Size() != 0 {
			continue
		}
		if err := os.Remove(filepath.Join(dir, name)); err != nil {
			return fmt.Errorf("remove the empty log file %s: %w", name, err)
		}
		log.Warn("removed an empty log file left by an interrupted start or write", "file", name)
	}
	return nil
}
