// Implementation of FileUtil.h on POSIX (open/fsync/rename/flock).
#include "runtime/FileUtil.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <system_error>
#include <thread>

#include <fmt/format.h>

namespace flexjit::fileutil {

namespace {

/// How often a waiting FileLock retries its non-blocking flock.
constexpr auto kLockPollInterval = std::chrono::milliseconds(5);

/// Lock files are empty markers; readable by all like any file the user creates.
constexpr mode_t kLockFileMode = 0644;

std::string errnoText(const char* what, const std::string& path) {
  return fmt::format("{} '{}' failed: {}", what, path, std::strerror(errno));
}

/// Closes a file descriptor on every way out of a scope.
struct FdCloser {
  int fd;
  ~FdCloser() { ::close(fd); }
};

/// Writes all of `data`, retrying short writes and EINTR.
bool writeAll(int fd, const char* data, size_t size) {
  while (size > 0) {
    ssize_t n = ::write(fd, data, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    data += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

}  // namespace

bool makeDirectories(const std::string& dir, std::string& error) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) {
    error = fmt::format("cannot create directory '{}': {}", dir, ec.message());
    return false;
  }
  return true;
}

bool writeFileAtomic(const std::string& path, const void* data, size_t size, std::string& error) {
  // mkstemp gives a name no other thread or process uses, in the destination's directory.
  std::string tmpl = path + ".tmp.XXXXXX";
  int fd = ::mkstemp(tmpl.data());
  if (fd < 0) {
    error = errnoText("creating a temp file for", path);
    return false;
  }
  bool ok = writeAll(fd, static_cast<const char*>(data), size);
  if (!ok) error = errnoText("writing", tmpl);
  if (ok && ::fsync(fd) != 0) {
    error = errnoText("fsync of", tmpl);
    ok = false;
  }
  ::close(fd);
  if (ok && ::rename(tmpl.c_str(), path.c_str()) != 0) {
    error = errnoText("renaming temp file onto", path);
    ok = false;
  }
  if (!ok) ::unlink(tmpl.c_str());
  return ok;
}

bool probeWritable(const std::string& dir, std::string& error) {
  std::string tmpl = dir + "/.write-probe.XXXXXX";
  int fd = ::mkstemp(tmpl.data());
  if (fd < 0) {
    error = errnoText("creating a file in", dir);
    return false;
  }
  ::close(fd);
  ::unlink(tmpl.c_str());
  return true;
}

std::optional<std::vector<char>> readFile(const std::string& path, std::string* problem, size_t maxBytes) {
  auto fail = [&](std::string why) -> std::optional<std::vector<char>> {
    if (problem) *problem = std::move(why);
    return std::nullopt;
  };
  // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever.
  const int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return errno == ENOENT ? std::nullopt : fail(fmt::format("cannot open it: {}", std::strerror(errno)));
  const FdCloser closer{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0) return fail(fmt::format("cannot stat it: {}", std::strerror(errno)));
  if (!S_ISREG(st.st_mode)) return fail("not a regular file");
  if (static_cast<uint64_t>(st.st_size) > maxBytes)
    return fail(fmt::format("{} bytes, more than the {} expected", st.st_size, maxBytes));
  std::vector<char> bytes(static_cast<size_t>(st.st_size));
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::read(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail(fmt::format("cannot read it: {}", std::strerror(errno)));
    if (n == 0) break;  // truncated meanwhile: the caller's checks see a short file
    done += static_cast<size_t>(n);
  }
  bytes.resize(done);
  return bytes;
}

void removeFile(const std::string& path) {
  std::error_code ec;
  std::filesystem::remove_all(path, ec);  // does not follow symlinks: removes the link itself
}

std::string userTempDir() {
  std::error_code ec;
  std::filesystem::path base = std::filesystem::temp_directory_path(ec);
  if (ec) base = "/tmp";
  return (base / fmt::format("flexjit-{}", ::getuid())).string();
}

std::string safeFileName(const std::string& name) {
  std::string out = name.empty() ? std::string("kernel") : name;
  for (char& c : out) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
              c == '.' || c == '-';
    if (!ok) c = '_';
  }
  return out;
}

FileLock::FileLock(const std::string& path, double timeoutSeconds) {
  fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, kLockFileMode);
  if (fd_ < 0) {
    error_ = errnoText("opening lock file", path);
    return;
  }
  // Poll a non-blocking flock so a process stuck while holding the lock delays us only up to the
  // timeout; a process that dies releases its lock with its file descriptors.
  auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeoutSeconds);
  while (true) {
    if (::flock(fd_, LOCK_EX | LOCK_NB) == 0) {
      held_ = true;
      return;
    }
    if (errno != EWOULDBLOCK && errno != EINTR) {
      error_ = errnoText("flock on", path);
      return;
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      error_ = fmt::format("timed out after {} s waiting for lock '{}'", timeoutSeconds, path);
      return;
    }
    std::this_thread::sleep_for(kLockPollInterval);
  }
}

FileLock::~FileLock() {
  if (fd_ < 0) return;
  if (held_) ::flock(fd_, LOCK_UN);
  ::close(fd_);
}

}  // namespace flexjit::fileutil
