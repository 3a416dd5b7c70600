// gpugate-kmsclient: one KMS mode set on a DRM card, so that a driver's
// mode-set register writes can be traced (gpugate mmio capture, the guest
// tests). It takes the card's first connected connector, a mode of the
// size asked (or the connector's first), a fresh dumb buffer, and sets it on
// the first CRTC; nothing is drawn.
//   gpugate-kmsclient /dev/dri/cardN [WIDTH HEIGHT]
// The structs are the kernel's uapi (torvalds/linux include/uapi/drm/drm_mode.h
// and drm.h); declared here so the tool needs no libdrm headers.
#include <fcntl.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace {

struct ModeInfo {
  uint32_t clock;
  uint16_t hdisplay, hsync_start, hsync_end, htotal, hskew;
  uint16_t vdisplay, vsync_start, vsync_end, vtotal, vscan;
  uint32_t vrefresh, flags, type;
  char name[32];
};
static_assert(sizeof(ModeInfo) == 68);

struct CardRes {
  uint64_t fb_id_ptr, crtc_id_ptr, connector_id_ptr, encoder_id_ptr;
  uint32_t count_fbs, count_crtcs, count_connectors, count_encoders;
  uint32_t min_width, max_width, min_height, max_height;
};
static_assert(sizeof(CardRes) == 64);

struct GetConnector {
  uint64_t encoders_ptr, modes_ptr, props_ptr, prop_values_ptr;
  uint32_t count_modes, count_props, count_encoders;
  uint32_t encoder_id, connector_id, connector_type, connector_type_id;
  uint32_t connection, mm_width, mm_height, subpixel, pad;
};
static_assert(sizeof(GetConnector) == 80);

struct CreateDumb {
  uint32_t height, width, bpp, flags, handle, pitch;
  uint64_t size;
};
static_assert(sizeof(CreateDumb) == 32);

struct FbCmd {
  uint32_t fb_id, width, height, pitch, bpp, depth, handle;
};
static_assert(sizeof(FbCmd) == 28);

struct Crtc {
  uint64_t set_connectors_ptr;
  uint32_t count_connectors, crtc_id, fb_id, x, y, gamma_size, mode_valid;
  ModeInfo mode;
};
static_assert(sizeof(Crtc) == 104);

constexpr unsigned long kGetResources = _IOWR('d', 0xA0, CardRes);
constexpr unsigned long kGetConnector = _IOWR('d', 0xA7, GetConnector);
constexpr unsigned long kSetCrtc = _IOWR('d', 0xA2, Crtc);
constexpr unsigned long kAddFb = _IOWR('d', 0xAE, FbCmd);
constexpr unsigned long kCreateDumb = _IOWR('d', 0xB2, CreateDumb);
constexpr uint32_t kConnected = 1;

int fail(const char* what) {
  std::fprintf(stderr, "gpugate-kmsclient: %s: %s\n", what, std::strerror(errno));
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2 && argc != 4) {
    std::fprintf(stderr, "usage: gpugate-kmsclient /dev/dri/cardN [WIDTH HEIGHT]\n");
    return 2;
  }
  unsigned want_w = argc == 4 ? static_cast<unsigned>(std::atoi(argv[2])) : 0;
  unsigned want_h = argc == 4 ? static_cast<unsigned>(std::atoi(argv[3])) : 0;
  int fd = open(argv[1], O_RDWR | O_CLOEXEC);
  if (fd < 0) return fail(argv[1]);
  CardRes res{};
  if (ioctl(fd, kGetResources, &res) != 0) return fail("GETRESOURCES");
  std::vector<uint32_t> crtcs(res.count_crtcs), connectors(res.count_connectors);
  res.crtc_id_ptr = reinterpret_cast<uintptr_t>(crtcs.data());
  res.connector_id_ptr = reinterpret_cast<uintptr_t>(connectors.data());
  res.count_fbs = res.count_encoders = 0;
  if (ioctl(fd, kGetResources, &res) != 0) return fail("GETRESOURCES");
  if (crtcs.empty()) {
    std::fprintf(stderr, "gpugate-kmsclient: %s has no CRTC\n", argv[1]);
    return 1;
  }
  for (uint32_t id : connectors) {
    GetConnector c{};
    c.connector_id = id;
    if (ioctl(fd, kGetConnector, &c) != 0) return fail("GETCONNECTOR");
    if (c.connection != kConnected || !c.count_modes) continue;
    std::vector<ModeInfo> modes(c.count_modes);
    c.modes_ptr = reinterpret_cast<uintptr_t>(modes.data());
    c.count_props = c.count_encoders = 0;
    if (ioctl(fd, kGetConnector, &c) != 0) return fail("GETCONNECTOR");
    modes.resize(std::min<size_t>(modes.size(), c.count_modes));
    const ModeInfo* mode = &modes[0];
    for (const auto& m : modes)
      if (m.hdisplay == want_w && m.vdisplay == want_h) mode = &m;
    CreateDumb dumb{};
    dumb.width = mode->hdisplay;
    dumb.height = mode->vdisplay;
    dumb.bpp = 32;
    if (ioctl(fd, kCreateDumb, &dumb) != 0) return fail("CREATE_DUMB");
    FbCmd fb{0, dumb.width, dumb.height, dumb.pitch, 32, 24, dumb.handle};
    if (ioctl(fd, kAddFb, &fb) != 0) return fail("ADDFB");
    Crtc set{};
    set.set_connectors_ptr = reinterpret_cast<uintptr_t>(&id);
    set.count_connectors = 1;
    set.crtc_id = crtcs[0];
    set.fb_id = fb.fb_id;
    set.mode_valid = 1;
    set.mode = *mode;
    if (ioctl(fd, kSetCrtc, &set) != 0) return fail("SETCRTC");
    std::printf("mode %ux%u on crtc %u, connector %u\n", mode->hdisplay, mode->vdisplay, crtcs[0], id);
    close(fd);
    return 0;
  }
  std::fprintf(stderr, "gpugate-kmsclient: %s has no connected connector with a mode\n", argv[1]);
  return 1;
}
