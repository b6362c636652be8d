// Other designs choose their policy through their hardware preset (docs/designs.md):
// `--hw ianus-like` partitions with `serial` unless `--policy` says otherwise; a machine
// without a `policy` key gets `hpim`.
// RUN: hpim compile opt-125m --hw ianus-like | filecheck %s --check-prefix=PRESET
// RUN: hpim compile opt-125m --hw ianus-like --policy hbm-only | filecheck %s --check-prefix=GIVEN
// RUN: hpim compile opt-125m --hw hpim | filecheck %s --check-prefix=NONE
// RUN: echo 'extends = "ianus-like"' > %t.toml
// RUN: echo 'policy = "ianus"' >> %t.toml
// RUN: not hpim compile opt-125m --hw %t.toml 2>&1 | filecheck %s --check-prefix=BAD

// PRESET: builtin.module attributes {{.*}}hpim.policy = "serial", hpim.hw = "ianus-like"}
// GIVEN: builtin.module attributes {{.*}}hpim.policy = "hbm-only", hpim.hw = "ianus-like"}
// NONE: builtin.module attributes {{.*}}hpim.policy = "hpim", hpim.hw = "hpim"}
// BAD: hpim compile: error: {{.*}}.toml: policy = 'ianus': unknown policy; registered: hpim, serial, hbm-only
