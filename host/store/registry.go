package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"github.com/dgraph-io/badger/v4"

	"github.com/concord-macp/concord/host/storage"
)

// Registry names a keyspace of small records kept beside the session log
// (storage.Kind).
type Registry = storage.Kind

// The registries, as storage names them. Module bytes have their own calls
// (PutBlob/Blob), since a module can be larger than one Badger transaction.
const (
	Policies         = storage.Policies
	ModeBindings     = storage.ModeBindings
	ModeDeclarations = storage.ModeDeclarations
	Audit            = storage.Audit
	GovernanceAudit  = storage.GovernanceAudit
)

// recordKinds gives each registry its key byte.
var recordKinds = map[storage.Kind]byte{
	storage.Policies:         kindPolicy,
	storage.ModeBindings:     0x05,
	storage.Audit:            0x07,
	storage.ModeDeclarations: 0x08,
	storage.GovernanceAudit:  0x09,
}

// kindBlob holds content-addressed blobs (module bytes) in chunks:
// kindBlob <name> 0x00 <chunk index, uint32 big-endian>; the blob's manifest
// (its length and chunk count) is kindBlobManifest <name>.
const (
	kindBlob         byte = 0x03
	kindBlobManifest byte = 0x06
	blobChunk             = 512 << 10
)

// MaxRecordKeyLen bounds registry keys.
const MaxRecordKeyLen = 512

func recordKey(kind byte, key string) ([]byte, error) {
	if key == "" || len(key) > MaxRecordKeyLen {
		return nil, fmt.Errorf("store: registry key of %d bytes", len(key))
	}
	return append([]byte{kind}, key...), nil
}

// kindOf returns the key byte of registry r.
func kindOf(r Registry) (byte, error) {
	k, ok := recordKinds[r]
	if !ok {
		return 0, fmt.Errorf("store: unknown registry %q", r)
	}
	return k, nil
}

// Put writes value under key in registry r, durably.
func (s *Store) Put(ctx context.Context, r Registry, key string, value []byte) error {
	kind, err := kindOf(r)
	if err != nil {
		return err
	}
	k, err := recordKey(kind, key)
	if err != nil {
		return err
	}
	return s.update(ctx, len(k)+len(value), func(txn *badger.Txn) error { return txn.Set(k, value) })
}

// Delete removes key from registry r, durably. Deleting a missing key is no
// error.
func (s *Store) Delete(ctx context.Context, r Registry, key string) error {
	kind, err := kindOf(r)
	if err != nil {
		return err
	}
	k, err := recordKey(kind, key)
	if err != nil {
		return err
	}
	return s.update(ctx, len(k), func(txn *badger.Txn) error { return txn.Delete(k) })
}

// Each calls fn for every record of registry r in ascending key order.
func (s *Store) Each(ctx context.Context, r Registry, fn func(key string, value []byte) error) error {
	return s.EachPrefix(ctx, r, "", fn)
}

// EachPrefix calls fn for every record of registry r whose key starts with
// prefix, in ascending key order.
func (s *Store) EachPrefix(ctx context.Context, r Registry, keyPrefix string, fn func(key string, value []byte) error) error {
	kind, err := kindOf(r)
	if err != nil {
		return err
	}
	return s.eachPrefix(ctx, kind, keyPrefix, fn)
}

// eachPrefix iterates the records of one key byte.
func (s *Store) eachPrefix(ctx context.Context, kind byte, keyPrefix string, fn func(key string, value []byte) error) error {
	if err := s.usable(); err != nil {
		return fmt.Errorf("store: registry: %w", err)
	}
	prefix := append([]byte{kind}, keyPrefix...)
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, PrefetchSize: 64, Prefix: prefix})
		defer it.Close()
		for it.Seek(prefix); it.ValidForPrefix(prefix); it.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			item := it.Item()
			v, err := item.ValueCopy(nil)
			if err != nil {
				return err
			}
			if err := fn(string(item.Key()[1:]), v); err != nil {
				return err
			}
		}
		return nil
	})
	if errors.Is(err, ErrStop) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("store: registry: %w", err)
	}
	return nil
}

// blobName is the key name of a blob of kind. Modules keep their bare
// digest (no colon), the name format 1 stores used; other kinds are
// prefixed with their kind and a colon.
func blobName(kind storage.BlobKind, name string) (string, error) {
	switch {
	case name == "":
		return "", errors.New("store: empty blob name")
	case kind == storage.Modules && strings.Contains(name, ":"):
		return "", fmt.Errorf("store: module name %.64q has a colon", name)
	case kind == storage.Modules:
		return name, nil
	case kind == storage.RegoSources:
		return "rego:" + name, nil
	}
	return "", fmt.Errorf("store: unknown blob kind %q", kind)
}

// EachBefore calls fn for every record of registry r whose key sorts
// before the key before ("" = after every record), in descending key
// order. fn may return ErrStop to end the walk early.
func (s *Store) EachBefore(ctx context.Context, r Registry, before string, fn func(key string, value []byte) error) error {
	kind, err := kindOf(r)
	if err != nil {
		return err
	}
	if err := s.usable(); err != nil {
		return fmt.Errorf("store: registry: %w", err)
	}
	prefix := []byte{kind}
	seek := append([]byte{kind}, before...)
	if before == "" {
		// Past every key of r: registry keys are at most MaxRecordKeyLen.
		seek = append(seek, bytes.Repeat([]byte{0xff}, MaxRecordKeyLen+1)...)
	}
	err = s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, PrefetchSize: 64, Prefix: prefix, Reverse: true})
		defer it.Close()
		for it.Seek(seek); it.ValidForPrefix(prefix); it.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			item := it.Item()
			key := string(item.Key()[1:])
			if before != "" && key >= before {
				continue
			}
			v, err := item.ValueCopy(nil)
			if err != nil {
				return err
			}
			if err := fn(key, v); err != nil {
				return err
			}
		}
		return nil
	})
	if errors.Is(err, ErrStop) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("store: registry: %w", err)
	}
	return nil
}

// PutBlob stores data under name (a content digest), in chunks; the blob
// becomes visible once its manifest is written, after every chunk.
// Writing an existing name again is a no-op. The disk guard admits the
// whole blob before the first chunk, so a full disk refuses it without
// leaving chunks behind.
func (s *Store) PutBlob(ctx context.Context, kind storage.BlobKind, name string, data []byte) error {
	name, err := blobName(kind, name)
	if err != nil {
		return err
	}
	mk, err := recordKey(kindBlobManifest, name)
	if err != nil {
		return err
	}
	if _, err := s.blob(ctx, name); err == nil {
		return nil
	}
	chunks := (len(data) + blobChunk - 1) / blobChunk
	size := len(data) + (chunks+1)*(len(mk)+8+perKeyOverhead)
	if err := s.admit(size); err != nil {
		return fmt.Errorf("store: blob %s: %w", name, err)
	}
	defer s.release(size)
	for i := range chunks {
		chunk := data[i*blobChunk : min((i+1)*blobChunk, len(data))]
		ck := binary.BigEndian.AppendUint32(append(append([]byte{kindBlob}, name...), idEnd), uint32(i))
		if err := s.write(ctx, func(txn *badger.Txn) error { return txn.Set(ck, chunk) }); err != nil {
			return fmt.Errorf("store: blob %s chunk %d: %w", name, i, err)
		}
	}
	manifest := binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint64(nil, uint64(len(data))), uint32(chunks))
	return s.write(ctx, func(txn *badger.Txn) error { return txn.Set(mk, manifest) })
}

// Blob returns the blob of kind stored under name, or an error wrapping
// ErrNotFound.
func (s *Store) Blob(ctx context.Context, kind storage.BlobKind, name string) ([]byte, error) {
	name, err := blobName(kind, name)
	if err != nil {
		return nil, err
	}
	return s.blob(ctx, name)
}

func (s *Store) blob(ctx context.Context, name string) ([]byte, error) {
	mk, err := recordKey(kindBlobManifest, name)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := s.usable(); err != nil {
		return nil, fmt.Errorf("store: blob: %w", err)
	}
	var out []byte
	err = s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(mk)
		if err != nil {
			return err
		}
		m, err := item.ValueCopy(nil)
		if err != nil || len(m) != 12 {
			return fmt.Errorf("corrupt manifest: %w", err)
		}
		size, chunks := binary.BigEndian.Uint64(m), binary.BigEndian.Uint32(m[8:])
		out = make([]byte, 0, size)
		for i := range chunks {
			ck := binary.BigEndian.AppendUint32(append(append([]byte{kindBlob}, name...), idEnd), i)
			item, err := txn.Get(ck)
			if err != nil {
				return fmt.Errorf("chunk %d: %w", i, err)
			}
			err = item.Value(func(v []byte) error {
				out = append(out, v...)
				return nil
			})
			if err != nil {
				return err
			}
		}
		if uint64(len(out)) != size {
			return fmt.Errorf("blob is %d bytes, manifest says %d", len(out), size)
		}
		return nil
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, fmt.Errorf("store: blob %s: %w", name, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("store: blob %s: %w", name, err)
	}
	return out, nil
}

// BlobNames lists the names of every stored blob of kind, in ascending
// order.
func (s *Store) BlobNames(ctx context.Context, kind storage.BlobKind) ([]string, error) {
	probe, err := blobName(kind, "x")
	if err != nil {
		return nil, err
	}
	prefix := strings.TrimSuffix(probe, "x")
	var names []string
	err = s.eachPrefix(ctx, kindBlobManifest, prefix, func(name string, _ []byte) error {
		if prefix == "" && strings.Contains(name, ":") {
			return nil // another kind's blob
		}
		names = append(names, strings.TrimPrefix(name, prefix))
		return nil
	})
	return names, err
}

// update runs one synced write transaction of about size bytes outside
// the session committer, once the disk guard admitted it.
func (s *Store) update(ctx context.Context, size int, fn func(*badger.Txn) error) error {
	size += perKeyOverhead
	if err := s.admit(size); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	defer s.release(size)
	return s.write(ctx, fn)
}

// write runs one synced write transaction whose size the disk guard has
// admitted.
func (s *Store) write(ctx context.Context, fn func(*badger.Txn) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := s.usable(); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	return s.db.Update(fn)
}
