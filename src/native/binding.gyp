{
  "targets": [
    {
      "target_name": "stratafs_sys",
      "sources": ["sys.c"],
      "cflags": ["-std=gnu11", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "defines": ["NAPI_VERSION=8"],
      "libraries": ["-lpthread"]
    },
    {
      # The low-level FUSE server (fuse-ll.c), linked to the libfuse 2.9.9 that
      # fuse-native ships in fuse-shared-library; RPATH $ORIGIN finds the copy
      # placed beside the addon, so no system libfuse2 is needed.
      "target_name": "stratafs_fuse",
      "sources": ["fuse-ll.c"],
      "include_dirs": ["<!(node -e \"require('fuse-shared-library/include')\")"],
      "libraries": ["<!(node -e \"require('fuse-shared-library/lib')\")"],
      "ldflags": ["-Wl,-rpath,'$$ORIGIN'"],
      "cflags": ["-std=gnu11", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-missing-field-initializers"],
      "defines": ["NAPI_VERSION=8", "_FILE_OFFSET_BITS=64"]
    },
    {
      # The transport of stratafs's own FUSE server (fuse-dev.c, native-notes/fuse-server.md):
      # /dev/fuse, mount(2), a uv_poll and batched reads; no libfuse.
      "target_name": "stratafs_fusedev",
      "sources": ["fuse-dev.c"],
      "cflags": ["-std=gnu11", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "defines": ["NAPI_VERSION=8"]
    },
    {
      # The `stratafs` command's short-lived parent (launcher.c, native-notes/launcher.md):
      # a mount then starts one Node process instead of two.
      "target_name": "stratafs",
      "type": "executable",
      "sources": ["launcher.c"],
      "cflags": ["-std=gnu11", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"]
    },
    {
      "target_name": "libfuse_copy",
      "type": "none",
      "dependencies": ["stratafs_fuse"],
      "copies": [{
        "destination": "<(PRODUCT_DIR)",
        "files": ["<!(node -e \"require('fuse-shared-library/lib')\")"]
      }],
      "actions": [{
        "action_name": "soname_link",
        "inputs": ["<!(node -e \"require('fuse-shared-library/lib')\")"],
        "outputs": ["<(PRODUCT_DIR)/libfuse.so.2"],
        "action": ["ln", "-sf", "libfuse.so", "<(PRODUCT_DIR)/libfuse.so.2"]
      }]
    }
  ]
}
