package store

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"
	"google.golang.org/protobuf/proto"

	storev1 "github.com/concord-macp/concord/proto/concord/store/v1"
)

// checkFormat stamps a new database with the format version, migrates one
// of an earlier format, and refuses one written by a newer build.
func checkFormat(db *badger.DB) error {
	var found string
	err := db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(formatKey)
		if err != nil {
			return err
		}
		v, err := item.ValueCopy(nil)
		found = string(v)
		return err
	})
	switch {
	case errors.Is(err, badger.ErrKeyNotFound):
		return db.Update(func(txn *badger.Txn) error { return txn.Set(formatKey, []byte(formatVersion)) })
	case err != nil:
		return fmt.Errorf("read format version: %w", err)
	case found == formatVersion:
		return nil
	case found == "1":
		if err := migrateFrom1(db); err != nil {
			return fmt.Errorf("migrate format 1 to %s: %w", formatVersion, err)
		}
		return db.Update(func(txn *badger.Txn) error { return txn.Set(formatKey, []byte(formatVersion)) })
	}
	return fmt.Errorf("format version %q, this build reads %q", found, formatVersion)
}

// migrateFrom1 moves every head's mode state into its state snapshot and
// builds the dedup index from the logs. It is safe to run again after a
// crash half way: a head already moved names its snapshot (state_sequence
// is never 0 in format 2) and is left alone; index records are rewritten
// with the same values.
func migrateFrom1(db *badger.DB) error {
	wb := db.NewWriteBatch()
	defer wb.Cancel()
	err := db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, PrefetchSize: 64})
		defer it.Close()
		for it.Seek([]byte{kindEntry}); it.Valid(); it.Next() {
			key := it.Item().KeyCopy(nil)
			switch key[0] {
			case kindEntry:
				e := &storev1.Entry{}
				if err := it.Item().Value(func(v []byte) error { return proto.Unmarshal(v, e) }); err != nil {
					return fmt.Errorf("entry %q: %w", key, err)
				}
				if e.GetOrigin() != storev1.Origin_ORIGIN_AGENT || e.GetEnvelope().GetMessageId() == "" {
					continue
				}
				id := string(key[1 : len(key)-9])
				if err := wb.Set(seenKey(id, e.GetEnvelope().GetMessageId()), binary.BigEndian.AppendUint64(nil, e.GetSequence())); err != nil {
					return err
				}
			case kindSession:
				head := &storev1.Session{}
				if err := it.Item().Value(func(v []byte) error { return proto.Unmarshal(v, head) }); err != nil {
					return fmt.Errorf("head %q: %w", key, err)
				}
				if head.GetStateSequence() != 0 {
					continue
				}
				id, _ := sessionIDOf(key)
				state, err := proto.Marshal(&storev1.StateSnapshot{Sequence: head.GetLastSequence(), ModeState: head.GetModeState()})
				if err != nil {
					return err
				}
				head.ModeState, head.StateSequence = nil, head.GetLastSequence()
				b, err := proto.Marshal(head)
				if err != nil {
					return err
				}
				if err := wb.Set(stateKey(id), state); err != nil {
					return err
				}
				if err := wb.Set(key, b); err != nil {
					return err
				}
			default:
				return nil // past the session kinds
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return wb.Flush()
}
