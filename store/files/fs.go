package files

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"syscall"
)

// FS is the file-system seam of Local: every call that matters for
// durability goes through it, so a test can record the order of fsyncs,
// links and directory syncs, or simulate a full disk. OS is the real one.
type FS interface {
	// CreateTemp creates a new file for writing, as os.CreateTemp.
	CreateTemp(dir, pattern string) (File, error)
	// OpenFile opens or creates a file as os.OpenFile with mode 0o644
	// (segment files and materialised instance files).
	OpenFile(name string, flag int) (File, error)
	// Open opens a file for reading.
	Open(name string) (File, error)
	// Mkdir creates one directory; it returns an error matching
	// fs.ErrExist when it is already there.
	Mkdir(name string) error
	// Link gives oldname the new name newname and fails with an error
	// matching fs.ErrExist if newname exists: a rename that never
	// overwrites, which keeps concurrent writers of one instance apart.
	Link(oldname, newname string) error
	// Rename moves oldname to newname, replacing it if it exists.
	Rename(oldname, newname string) error
	Remove(name string) error
	// SyncDir makes the entries of a directory durable.
	SyncDir(name string) error
	ReadDir(name string) ([]fs.DirEntry, error)
	Stat(name string) (fs.FileInfo, error)
	// Space reports the free bytes (for an unprivileged writer) and the
	// total size of the file system that holds name.
	Space(name string) (free, total uint64, err error)
}

// File is an open file of an FS. A File that also has a Datasync method
// (fdatasync) has it called where only the data must be durable; an
// *os.File gets fdatasync(2) on Linux.
type File interface {
	io.Writer
	io.Reader
	io.ReaderAt
	io.WriterAt
	Truncate(size int64) error
	Sync() error
	Close() error
	Name() string
}

// OS is the FS of the operating system.
type OS struct{}

func (OS) CreateTemp(dir, pattern string) (File, error) { return os.CreateTemp(dir, pattern) }
func (OS) Open(name string) (File, error)               { return os.Open(name) }
func (OS) OpenFile(name string, flag int) (File, error) { return os.OpenFile(name, flag, 0o644) }
func (OS) Mkdir(name string) error                      { return os.Mkdir(name, 0o755) }
func (OS) Link(oldname, newname string) error           { return os.Link(oldname, newname) }
func (OS) Rename(oldname, newname string) error         { return os.Rename(oldname, newname) }
func (OS) Remove(name string) error                     { return os.Remove(name) }
func (OS) ReadDir(name string) ([]fs.DirEntry, error)   { return os.ReadDir(name) }
func (OS) Stat(name string) (fs.FileInfo, error)        { return os.Stat(name) }

func (OS) SyncDir(name string) error {
	d, err := os.Open(name)
	if err != nil {
		return err
	}
	err = d.Sync()
	return errors.Join(err, d.Close())
}

func (OS) Space(name string) (free, total uint64, err error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(name, &st); err != nil {
		return 0, 0, &fs.PathError{Op: "statfs", Path: name, Err: err}
	}
	return st.Bavail * uint64(st.Bsize), st.Blocks * uint64(st.Bsize), nil
}
