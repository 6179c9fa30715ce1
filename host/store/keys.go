package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// Record kinds: the first byte of every key.
const (
	kindMeta    byte = 0x00
	kindEntry   byte = 0x01
	kindSession byte = 0x02
	kindPolicy  byte = 0x04 // policy registry records (see registry.go)
	kindState   byte = 0x10 // a session's latest state snapshot
	kindSeen    byte = 0x11 // dedup index: message id -> sequence
)

// idEnd ends the session id inside a key; ids never contain it.
const idEnd byte = 0x00

// MaxSessionIDLen bounds session ids, well inside Badger's key size limit.
const MaxSessionIDLen = 1024

// formatKey holds the store's format version.
var formatKey = []byte{kindMeta, 'f', 'o', 'r', 'm', 'a', 't'}

// formatVersion is the layout this build writes. Format 1 kept the mode
// state in the head and had no dedup index; Open migrates it (migrate.go).
const formatVersion = "2"

func checkSessionID(id string) error {
	switch {
	case id == "":
		return errors.New("empty session id")
	case len(id) > MaxSessionIDLen:
		return fmt.Errorf("session id is %d bytes, more than %d", len(id), MaxSessionIDLen)
	case strings.IndexByte(id, idEnd) >= 0:
		return fmt.Errorf("session id %q contains a NUL byte", id)
	}
	return nil
}

// sessionPrefix returns kind, id, idEnd with room for extra bytes.
func sessionPrefix(kind byte, id string, extra int) []byte {
	k := make([]byte, 0, 1+len(id)+1+extra)
	k = append(k, kind)
	k = append(k, id...)
	return append(k, idEnd)
}

func sessionKey(id string) []byte { return sessionPrefix(kindSession, id, 0) }

func stateKey(id string) []byte { return sessionPrefix(kindState, id, 0) }

// seenKey is kindSeen <session id> 0x00 <message id>.
func seenKey(id, messageID string) []byte {
	return append(sessionPrefix(kindSeen, id, len(messageID)), messageID...)
}

func entryPrefix(id string) []byte { return sessionPrefix(kindEntry, id, 8) }

func entryKey(id string, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(entryPrefix(id), seq)
}

// entrySeq reads the sequence at the end of an entry key.
func entrySeq(key []byte) (uint64, bool) {
	if len(key) < 1+1+8 || key[0] != kindEntry {
		return 0, false
	}
	return binary.BigEndian.Uint64(key[len(key)-8:]), true
}

// sessionIDOf reads the session id back from a snapshot key.
func sessionIDOf(key []byte) (string, bool) {
	if len(key) < 3 || key[0] != kindSession || key[len(key)-1] != idEnd {
		return "", false
	}
	return string(key[1 : len(key)-1]), true
}
