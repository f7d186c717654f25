package files

import (
	"errors"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// datasync makes the data of f durable (fdatasync(2)): unlike fsync it
// skips a journal commit when only timestamps changed, so an overwrite
// inside a file's allocated size costs one device flush.
func datasync(f File) error {
	if d, ok := f.(interface{ Datasync() error }); ok {
		return d.Datasync()
	}
	sc, ok := f.(syscall.Conn)
	if !ok {
		return f.Sync()
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return f.Sync()
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = ignoringEINTR(func() error { return unix.Fdatasync(int(fd)) }) }); err != nil {
		return err
	}
	return serr
}

// startWriteback asks the kernel to start writing f's dirty pages, without
// waiting (sync_file_range(2) SYNC_FILE_RANGE_WRITE). Started for a batch
// of new files before their fsyncs, it lets one journal commit carry the
// block allocations of them all. It is a hint: errors are ignored.
func startWriteback(f File) {
	hint(f, func(fd int) { unix.SyncFileRange(fd, 0, 0, unix.SYNC_FILE_RANGE_WRITE) })
}

func ignoringEINTR(fn func() error) error {
	for {
		if err := fn(); err != syscall.EINTR {
			return err
		}
	}
}

// openDirect opens name for writes that bypass the page cache (O_DIRECT),
// or returns nil where the file system refuses them (then the segment's
// buffered descriptor is written instead). An aligned read of the first
// block finds a file system that opens with O_DIRECT but wants another
// alignment than directAlign.
func openDirect(fsys FS, name string) File {
	f, err := fsys.OpenFile(name, os.O_RDWR|unix.O_DIRECT)
	if err != nil {
		return nil
	}
	if _, err := f.ReadAt(alignedBuf(directAlign), 0); errors.Is(err, syscall.EINVAL) {
		f.Close()
		return nil
	}
	return f
}

// dropCache asks the kernel to drop f's clean cached pages
// (POSIX_FADV_DONTNEED). It is a hint: errors are ignored.
func dropCache(f File) {
	hint(f, func(fd int) { unix.Fadvise(fd, 0, 0, unix.FADV_DONTNEED) })
}

// hint runs call on f's descriptor where f has one; advice to the kernel,
// so nothing is reported.
func hint(f File, call func(fd int)) {
	sc, ok := f.(syscall.Conn)
	if !ok {
		return
	}
	if rc, err := sc.SyscallConn(); err == nil {
		rc.Control(func(fd uintptr) { call(int(fd)) })
	}
}
