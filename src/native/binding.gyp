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
      # The transport of stratafs's own FUSE server (fuse-dev.c, native-notes/fuse-server.md):
      # /dev/fuse, mount(2), a uv_poll and batched reads; no libfuse.
      "target_name": "stratafs_fusedev",
      "sources": ["fuse-dev.c"],
      "cflags": ["-std=gnu11", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "defines": ["NAPI_VERSION=8"],
      "libraries": ["-lpthread"]
    },
    {
      # The `stratafs` command's short-lived parent (launcher.c, native-notes/launcher.md):
      # a mount then starts one Node process instead of two.
      "target_name": "stratafs",
      "type": "executable",
      "sources": ["launcher.c"],
      "cflags": ["-std=gnu11", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"]
    }
  ]
}
