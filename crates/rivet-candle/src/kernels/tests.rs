//! The kernels against plain references: small products against a plain sum, im2col and images
//! side by side against the loops they replace, the 2×2 max pool against the general loop, the
//! vectorizable `exp` within one ulp, broadcasting arithmetic and the one-pass layer norm against
//! Candle's operators.

use candle_core::{DType as CDType, Device, Tensor as CTensor};

use super::binary::*;
use super::conv::*;
use super::direct;
use super::gemm::*;
use super::norm::*;
use super::pool::*;
use super::softmax::*;
use super::threads;
use super::window::*;

fn window(kernel: &[usize], strides: &[usize], dilations: &[usize], pads: &[usize]) -> Window {
    Window {
        kernel: kernel.to_vec(),
        strides: strides.to_vec(),
        dilations: dilations.to_vec(),
        pads: Some(pads.to_vec()),
        auto_pad: "NOTSET".into(),
        ceil: false,
    }
}

/// Values with NaNs and ties, distinct enough to catch a misplaced read.
fn values(n: usize) -> Vec<f32> {
    (0..n).map(|i| if i % 37 == 5 { f32::NAN } else { ((i * 7919) % 101) as f32 - 50.0 }).collect()
}

#[test]
fn small_products_equal_a_plain_sum() {
    // (m, k, n): rows in pairs and alone, 32- and 8-column blocks and their padded tails, a
    // lone column, an empty inner dim, 8 rows of a narrow output.
    for &(m, k, n) in &[
        (1, 16, 64),
        (3, 5, 83),
        (2, 7, 17),
        (4, 16, 64),
        (1, 32, 3),
        (4, 9, 1),
        (2, 0, 5),
        (8, 32, 3),
        (7, 5, 7),
    ] {
        let av: Vec<f64> = (0..m * k).map(|i| ((i * 37) % 23) as f64 / 7.0 - 1.5).collect();
        let bv: Vec<f64> = (0..k * n).map(|i| ((i * 53) % 29) as f64 / 5.0 - 2.5).collect();
        let c0: Vec<f64> = (0..m * n).map(|i| (i % 5) as f64).collect();
        // `a` as the transpose of a [k, m] tensor: its rows are strided, read in place.
        let a = CTensor::from_vec(av.clone(), (m, k), &Device::Cpu).unwrap();
        let at = a.t().unwrap().contiguous().unwrap().t().unwrap();
        let plain = CTensor::from_vec(bv.clone(), (k, n), &Device::Cpu).unwrap();
        // `b` as a view of the first n columns of wider rows: padded with zeros at load as
        // a constant B is (its last block of 8 read in place), and padded with NaN, which
        // must stay in the sums that are not stored.
        let nan_padded = {
            let w = n.next_multiple_of(8) + 8;
            let v: Vec<f64> =
                (0..k * w).map(|i| if i % w < n { bv[i / w * n + i % w] } else { f64::NAN }).collect();
            CTensor::from_vec(v, (k, w), &Device::Cpu).unwrap().narrow(1, 0, n).unwrap()
        };
        let padded = pad_columns(plain.clone()).unwrap();
        if n % 8 != 0 && k > 0 {
            assert_eq!(padded.stride()[0], n.next_multiple_of(8), "({m}, {k}, {n}) padded");
        }
        for (a, b) in [(&a, &plain), (&at, &plain), (&a, &padded), (&at, &nan_padded)] {
            let mut got = c0.clone();
            let done = with_strided(a, |a: Strided<'_, f64>| {
                with_strided(b, |b: Strided<'_, f64>| {
                    small_gemm(a, b, a.start, b.start, &mut got, (m, k, n), 0.5, Epilogue::PLAIN)
                })
            })
            .unwrap()
            .unwrap();
            assert!(done, "({m}, {k}, {n}) is small");
            let mut want = c0.clone();
            for i in 0..m {
                for j in 0..n {
                    want[i * n + j] += 0.5 * (0..k).map(|p| av[i * k + p] * bv[p * n + j]).sum::<f64>();
                }
            }
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() <= 1e-12 * (1.0 + w.abs()), "({m}, {k}, {n}): {g} vs {w}");
            }
            // Starting from a bias row instead of `c`, with a Relu as the sums are stored.
            let bias: Vec<f64> = (0..n).map(|j| (j % 7) as f64 - 3.0).collect();
            let mut got = vec![f64::NAN; m * n];
            let done = with_strided(a, |a: Strided<'_, f64>| {
                with_strided(b, |b: Strided<'_, f64>| {
                    let epilogue = Epilogue { start: Some(&bias), relu: true };
                    small_gemm(a, b, a.start, b.start, &mut got, (m, k, n), 0.5, epilogue)
                })
            })
            .unwrap()
            .unwrap();
            assert!(done);
            for i in 0..m {
                for j in 0..n {
                    let sum = bias[j] + 0.5 * (0..k).map(|p| av[i * k + p] * bv[p * n + j]).sum::<f64>();
                    let (g, w) = (got[i * n + j], sum.max(0.0));
                    assert!((g - w).abs() <= 1e-12 * (1.0 + w.abs()), "({m}, {k}, {n}) relu: {g} vs {w}");
                }
            }
        }
    }
    // Too large, too many rows, or `b` with strided rows: left to the gemm crate, `c`
    // untouched.
    let big = CTensor::zeros((64, 64), candle_core::DType::F64, &Device::Cpu).unwrap();
    let (a9, b9) = (
        CTensor::zeros((9, 2), candle_core::DType::F64, &Device::Cpu).unwrap(),
        CTensor::zeros((2, 2), candle_core::DType::F64, &Device::Cpu).unwrap(),
    );
    let bt = CTensor::zeros((3, 4), candle_core::DType::F64, &Device::Cpu).unwrap().t().unwrap();
    let a4 = CTensor::zeros((1, 4), candle_core::DType::F64, &Device::Cpu).unwrap();
    let mut c = vec![1.0; 64 * 64];
    let run = |a: &CTensor, b: &CTensor, c: &mut [f64], mkn| {
        with_strided(a, |a: Strided<'_, f64>| {
            with_strided(b, |b: Strided<'_, f64>| {
                small_gemm(a, b, a.start, b.start, c, mkn, 1.0, Epilogue::PLAIN)
            })
        })
        .unwrap()
        .unwrap()
    };
    assert!(!run(&big, &big, &mut c, (64, 64, 64)));
    assert!(!run(&a9, &b9, &mut c[..18], (9, 2, 2)));
    assert!(!run(&a4, &bt, &mut c[..3], (1, 4, 3)));
    assert!(c.iter().all(|&v| v == 1.0));
}

#[test]
fn serial_products_write_every_element_on_both_paths() {
    // Batched [m, k] @ [k, n] on the calling thread: small products (added to a zeroed
    // output), the gemm crate's (which write theirs unread), a shared `b`, a transposed `a`,
    // and a one-column output, against a plain sum in f64.
    let cases: [(usize, usize, usize, usize, bool); 5] = [
        (2, 3, 5, 4, false),
        (3, 24, 8, 24, false),
        (2, 24, 8, 24, true),
        (1, 16, 12, 9, false),
        (4, 10, 6, 1, false),
    ];
    for (batches, m, k, n, shared) in cases {
        let a = CTensor::from_vec(
            values(batches * m * k)
                .iter()
                .map(|v| if v.is_nan() { 0.5 } else { v.rem_euclid(7.0) })
                .collect::<Vec<f32>>(),
            (batches, m, k),
            &Device::Cpu,
        )
        .unwrap();
        let a = if m == 16 { a.reshape((batches, k, m)).unwrap().transpose(1, 2).unwrap() } else { a };
        let bb = if shared { 1 } else { batches };
        let b = CTensor::from_vec(
            values(bb * k * n)
                .iter()
                .map(|v| if v.is_nan() { 0.5 } else { v.rem_euclid(5.0) - 2.0 })
                .collect::<Vec<f32>>(),
            (bb, k, n),
            &Device::Cpu,
        )
        .unwrap();
        let b = if shared { b.squeeze(0).unwrap() } else { b };
        let got = serial_matmul(&a, &b).unwrap().expect("a small product runs on the calling thread");
        assert_eq!(got.dims(), &[batches, m, n]);
        let got: Vec<f32> = got.flatten_all().unwrap().to_vec1().unwrap();
        let av: Vec<Vec<Vec<f32>>> = a.to_vec3().unwrap();
        let bv: Vec<f32> = b.flatten_all().unwrap().to_vec1().unwrap();
        for (i, rows) in av.iter().enumerate() {
            let bo = if shared { 0 } else { i * k * n };
            for (r, row) in rows.iter().enumerate() {
                for c in 0..n {
                    let want: f64 =
                        row.iter().enumerate().map(|(p, &x)| x as f64 * bv[bo + p * n + c] as f64).sum();
                    let at = (i * m + r) * n + c;
                    assert!(
                        (got[at] as f64 - want).abs() <= 1e-4 * (1.0 + want.abs()),
                        "{:?} [{i},{r},{c}]: {} vs {want}",
                        (batches, m, k, n),
                        got[at]
                    );
                }
            }
        }
    }
}

#[test]
fn images_side_by_side_equal_images_one_at_a_time() {
    // 10×10 planes (100 positions): five images per product, so seven images go in chunks
    // of 5 and 2; two groups and a bias.
    let (n, c, m, g) = (7, 4, 6, 2);
    let finite = |len: usize| -> Vec<f32> {
        values(len).into_iter().map(|v| if v.is_nan() { 0.5 } else { v / 50.0 }).collect()
    };
    let x = CTensor::from_vec(finite(n * c * 100), (n, c, 10, 10), &Device::Cpu).unwrap();
    let w = CTensor::from_vec(finite(m * (c / g) * 9), (m, c / g, 3, 3), &Device::Cpu).unwrap();
    let b = CTensor::from_vec((0..m).map(|i| i as f32).collect::<Vec<f32>>(), m, &Device::Cpu).unwrap();
    let win = window(&[3, 3], &[1, 1], &[1, 1], &[1, 1, 1, 1]);
    let cache = GeometryCache::default();
    assert_eq!((BATCH_COLUMNS / 100).clamp(1, n), 5, "the case puts five images side by side");
    let run = |x: &CTensor, bias: Option<&CTensor>, relu: bool| -> Vec<f32> {
        let y = conv_plain(x, &w, bias, &win, g, &cache, relu).unwrap();
        y.flatten_all().unwrap().to_vec1().unwrap()
    };
    let per = m * 100;
    // With and without the bias and a fused Relu: the images side by side equal each image
    // alone, and the fused Relu equals the unfused result clamped at zero.
    for bias in [Some(&b), None] {
        let plain = run(&x, bias, false);
        let fused = run(&x, bias, true);
        assert!(plain.iter().any(|&v| v < 0.0) && plain.iter().any(|&v| v > 0.0), "both signs occur");
        for (f, p) in fused.iter().zip(&plain) {
            assert_eq!(*f, p.max(0.0));
        }
        for relu in [false, true] {
            let all = if relu { &fused } else { &plain };
            for i in 0..n {
                let one = run(&x.narrow(0, i, 1).unwrap(), bias, relu);
                for (j, (a, o)) in all[i * per..(i + 1) * per].iter().zip(&one).enumerate() {
                    assert!((a - o).abs() <= 1e-5 * (1.0 + o.abs()), "image {i}, element {j}: {a} vs {o}");
                }
            }
        }
    }
    // The bias is each output channel's own: with it minus without it is channel `i % m`.
    let (with, without) = (run(&x, Some(&b), false), run(&x, None, false));
    for (j, (a, o)) in with.iter().zip(&without).enumerate() {
        let channel = (j / 100 % m) as f32;
        assert!((a - o - channel).abs() <= 1e-4, "element {j}: {a} - {o} is not {channel}");
    }
}

#[test]
fn images_side_by_side_give_the_same_bits_on_two_threads_as_on_one() {
    // 7×7 planes: ten images per product, so twelve images go in chunks of 10 and 2; large
    // enough (over SERIAL_GEMM_MACS) for a budget of two threads to split im2col and each
    // product over the team. One group and two, with and without the bias and Relu, NaN in.
    let (n, c, m) = (12, 64, 64);
    let finite = |len: usize| -> Vec<f32> {
        values(len).into_iter().map(|v| if v.is_nan() { 0.5 } else { v / 50.0 }).collect()
    };
    let mut xs = finite(n * c * 49);
    xs[10 * c * 49 + 3 * 49 + 24] = f32::NAN;
    let x = CTensor::from_vec(xs, (n, c, 7, 7), &Device::Cpu).unwrap();
    let b =
        CTensor::from_vec((0..m).map(|i| i as f32 - 30.0).collect::<Vec<f32>>(), m, &Device::Cpu).unwrap();
    let win = window(&[3, 3], &[1, 1], &[1, 1], &[1, 1, 1, 1]);
    assert_eq!((BATCH_COLUMNS / 49).clamp(1, n), 10, "the case puts ten images side by side");
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<u32>>();
    let one = threads::Budget::new(1).unwrap();
    let two = threads::Budget::new(2).unwrap();
    for g in [1, 2] {
        let w = CTensor::from_vec(finite(m * (c / g) * 9), (m, c / g, 3, 3), &Device::Cpu).unwrap();
        assert!(n * m * 49 * (c / g) * 9 > SERIAL_GEMM_MACS, "the case splits over threads");
        let cache = GeometryCache::default();
        for (bias, relu) in [(Some(&b), true), (Some(&b), false), (None, true), (None, false)] {
            let run = |budget: &threads::Budget| -> Vec<f32> {
                let y =
                    threads::with_budget(Some(budget), || conv_plain(&x, &w, bias, &win, g, &cache, relu));
                y.unwrap().flatten_all().unwrap().to_vec1().unwrap()
            };
            let (serial, split) = (run(&one), run(&two));
            let nan = serial.iter().filter(|v| v.is_nan()).count();
            assert!(nan > 0 && nan < 49 * m, "a NaN reaches its windows' outputs alone: {nan}");
            assert!(serial.iter().any(|&v| v > 0.0), "positive outputs occur");
            assert_eq!(bits(&serial), bits(&split), "{g} group(s), bias {}, relu {relu}", bias.is_some());
            // And the same as each image alone.
            for i in [0, 9, 10, 11] {
                let y = threads::with_budget(Some(&one), || {
                    conv_plain(&x.narrow(0, i, 1).unwrap(), &w, bias, &win, g, &cache, relu)
                });
                let y: Vec<f32> = y.unwrap().flatten_all().unwrap().to_vec1().unwrap();
                let part = &split[i * m * 49..(i + 1) * m * 49];
                for (j, (a, o)) in part.iter().zip(&y).enumerate() {
                    let same = (a.is_nan() && o.is_nan()) || (a - o).abs() <= 1e-4 * (1.0 + o.abs());
                    assert!(same, "image {i}, element {j}: {a} vs {o}");
                }
            }
        }
    }
}

#[test]
fn a_convolution_over_no_input_channels_is_its_bias() {
    let x = CTensor::zeros((2, 0, 4, 4), CDType::F32, &Device::Cpu).unwrap();
    let w = CTensor::zeros((3, 0, 3, 3), CDType::F32, &Device::Cpu).unwrap();
    let b = CTensor::from_vec(vec![-1.0f32, 2.0, 3.0], 3, &Device::Cpu).unwrap();
    let win = window(&[3, 3], &[1, 1], &[1, 1], &[1, 1, 1, 1]);
    let cache = GeometryCache::default();
    for relu in [false, true] {
        let y = conv_plain(&x, &w, Some(&b), &win, 1, &cache, relu).unwrap();
        assert_eq!(y.dims(), &[2, 3, 4, 4]);
        let got: Vec<f32> = y.flatten_all().unwrap().to_vec1().unwrap();
        let want: Vec<f32> = (0..2 * 3 * 16)
            .map(|j| [-1.0f32, 2.0, 3.0][j / 16 % 3])
            .map(|v| if relu { v.max(0.0) } else { v })
            .collect();
        assert_eq!(got, want);
    }
    let y = conv_plain(&x, &w, None, &win, 1, &cache, false).unwrap();
    assert!(y.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().all(|&v| v == 0.0));
}

#[test]
fn im2col_block_copies_equal_the_gather_they_replace() {
    type Case = (&'static [usize], &'static [usize], &'static [usize], &'static [usize], &'static [usize]);
    let cases: &[Case] = &[
        // (input, kernel, strides, dilations, pads): "same" stride-1 windows take the block
        // copy; the others keep their runs; 1-D and 3-D too.
        (&[7, 9], &[3, 3], &[1, 1], &[1, 1], &[1, 1, 1, 1]),
        (&[8, 8], &[5, 5], &[1, 1], &[1, 1], &[2, 2, 2, 2]),
        (&[6, 5], &[3, 1], &[1, 1], &[1, 1], &[1, 0, 1, 0]),
        (&[5, 6], &[2, 2], &[1, 1], &[1, 1], &[1, 1, 0, 0]),
        (&[9, 9], &[3, 3], &[1, 1], &[2, 2], &[2, 2, 2, 2]),
        (&[8, 8], &[3, 3], &[1, 1], &[1, 1], &[0, 0, 0, 0]),
        (&[8, 8], &[3, 3], &[2, 2], &[1, 1], &[1, 1, 1, 1]),
        // Strided windows, whose output rows are runs with a step: a ResNet stem's 7×7
        // stride 2, a 1×1 stride-2 shortcut, stride 3 with dilation 2, and 1-D.
        (&[15, 13], &[7, 7], &[2, 2], &[1, 1], &[3, 3, 3, 3]),
        (&[9, 8], &[1, 1], &[2, 2], &[1, 1], &[0, 0, 0, 0]),
        (&[17, 16], &[3, 3], &[3, 3], &[2, 2], &[1, 2, 0, 1]),
        (&[40], &[5], &[4], &[1], &[2, 1]),
        (&[11], &[3], &[1], &[1], &[1, 1]),
        (&[4, 5, 6], &[3, 3, 3], &[1, 1, 1], &[1, 1, 1], &[1, 1, 1, 1, 1, 1]),
    ];
    let (mut block_copies, mut stepped) = (0, 0);
    for &(input, kernel, strides, dilations, pads) in cases {
        let geo = geometry(&window(kernel, strides, dilations, pads), input).unwrap();
        block_copies += geo.shifted.iter().flatten().count();
        stepped += geo.runs.iter().flatten().filter(|r| r.3 > 1).count();
        let (c, plane) = (2, input.iter().product::<usize>());
        let src = values(c * plane);
        let mut col = vec![f32::INFINITY; c * geo.k * geo.p];
        im2col(&src, &geo, c, plane, &mut col, geo.p);
        for ch in 0..c {
            for kk in 0..geo.k {
                for pp in 0..geo.p {
                    let o = geo.by_k[kk * geo.p + pp];
                    let want = if o == PAD { 0.0 } else { src[ch * plane + o as usize] };
                    let got = col[(ch * geo.k + kk) * geo.p + pp];
                    assert!(
                        got.to_bits() == want.to_bits(),
                        "{input:?} k{kernel:?} s{strides:?} d{dilations:?} p{pads:?}: ch {ch}, kernel \
                         position {kk}, output {pp}: {got} instead of {want}"
                    );
                }
            }
        }
    }
    assert!(block_copies >= 9 + 25 + 3, "the same-size windows use block copies ({block_copies})");
    assert!(stepped >= 49 * 4, "the strided windows' rows are runs with a step ({stepped})");
}

#[test]
fn the_2x2_max_pool_equals_the_general_loop() {
    for (h, w) in [(32, 32), (5, 7), (2, 2), (1, 4), (6, 1)] {
        let planes = 3;
        let src = values(planes * h * w);
        let shape =
            Pool2d { input: [h, w], out: [h / 2, w / 2], kernel: [2, 2], strides: [2, 2], begin: [0, 0] };
        let fast = max_pool_2d(&src, &shape, planes).unwrap();
        // Against a direct reference: NaN wins a window, else the largest value.
        let mut want = Vec::new();
        for p in 0..planes {
            for oy in 0..h / 2 {
                for ox in 0..w / 2 {
                    let at = |y: usize, x: usize| src[p * h * w + y * w + x];
                    let cells = [
                        at(2 * oy, 2 * ox),
                        at(2 * oy, 2 * ox + 1),
                        at(2 * oy + 1, 2 * ox),
                        at(2 * oy + 1, 2 * ox + 1),
                    ];
                    want.push(if cells.iter().any(|v| v.is_nan()) {
                        f32::NAN
                    } else {
                        cells.iter().copied().fold(f32::NEG_INFINITY, f32::max)
                    });
                }
            }
        }
        let bits =
            |v: &[f32]| v.iter().map(|x| if x.is_nan() { u32::MAX } else { x.to_bits() }).collect::<Vec<_>>();
        assert_eq!(bits(&fast), bits(&want), "{h}x{w}");
    }
}

#[test]
fn the_2x2_max_pool_of_rows_gives_the_bits_of_the_whole_plane_pool() {
    // Rows 16, 24 and 34 wide (whole vectors of outputs, then a tail), with NaN, both zeros
    // in ties and equal values at every place of a window.
    for wd in [16, 24, 34, 5] {
        let (planes, h) = (3, 6);
        let mut src = values(planes * h * wd);
        for (i, v) in src.iter_mut().enumerate() {
            *v = match i % 7 {
                0 => -0.0,
                1 => 0.0,
                2 if i % 3 == 0 => f32::NAN,
                3 => 1.0,
                4 => 1.0,
                _ => *v,
            };
        }
        let want = max_pool_2x2(&src, planes, h, wd);
        // Rows 1 and 2 of each plane's three pooled rows, into an output of the whole planes.
        let (oh, ow) = (h / 2, wd / 2);
        let mut got = vec![f32::INFINITY; planes * oh * ow];
        // SAFETY: rows 1..3 of each plane, `oh * ow` apart, lie in `got`, which nothing else
        // touches; the source holds every row read.
        unsafe {
            max_pool_2x2_planes(&src[2 * wd..], h * wd, got.as_mut_ptr().add(ow), oh * ow, [planes, 2, wd])
        };
        for p in 0..planes {
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            let rows = p * oh * ow + ow..(p + 1) * oh * ow;
            assert_eq!(bits(&got[rows.clone()]), bits(&want[rows]), "{wd} wide, plane {p}");
            // Row 0 is not written.
            assert!(got[p * oh * ow..p * oh * ow + ow].iter().all(|v| *v == f32::INFINITY));
        }
    }
}

#[test]
fn the_f32_max_pool_equals_the_general_loop_bit_for_bit() {
    // (input, out, kernel, strides, begin)
    type Case = ([usize; 2], [usize; 2], [usize; 2], [usize; 2], [usize; 2]);
    let cases: &[Case] = &[
        // ResNet's 3×3 stride-2 pool with padding 1, and odd sizes of it.
        ([56, 56], [28, 28], [3, 3], [2, 2], [1, 1]),
        ([13, 21], [7, 11], [3, 3], [2, 2], [1, 1]),
        // Its last window column past the input's last (as ceil mode makes), 9 outputs wide.
        ([16, 17], [9, 9], [3, 3], [2, 2], [1, 1]),
        // Stride 1, same size.
        ([9, 19], [9, 19], [3, 3], [1, 1], [1, 1]),
        // Stride 2 one way, 1 the other; a 1×5 and a 4×2 window.
        ([10, 17], [10, 7], [1, 5], [1, 2], [0, 0]),
        ([10, 17], [4, 16], [4, 2], [2, 1], [1, 0]),
        // A last window past the input (as ceil mode makes), rows and columns under 8.
        ([5, 5], [3, 3], [2, 2], [2, 2], [0, 0]),
        ([7, 3], [4, 2], [3, 3], [2, 2], [1, 1]),
        // Windows wholly in the padding, and a column stride the fast loop leaves alone.
        ([4, 12], [4, 9], [2, 2], [3, 2], [0, 3]),
        ([12, 30], [4, 10], [3, 3], [3, 3], [0, 0]),
        // 2×2 stride 2: the direct 2×2 loop.
        ([8, 8], [4, 4], [2, 2], [2, 2], [0, 0]),
    ];
    for &(input, out, kernel, strides, begin) in cases {
        let planes = 3;
        // NaNs and ties, both zeros, and a last plane of negatives only.
        let mut src = values(planes * input[0] * input[1]);
        let plane = input[0] * input[1];
        for (i, v) in src.iter_mut().enumerate() {
            if i % 11 == 3 {
                *v = -0.0;
            } else if i % 13 == 4 {
                *v = 0.0;
            } else if i >= 2 * plane && !v.is_nan() {
                *v = -v.abs() - 1.0;
            }
        }
        let shape = Pool2d { input, out, kernel, strides, begin };
        let general = max_pool_2d(&src, &shape, planes).unwrap();
        assert_eq!(general.len(), planes * out[0] * out[1]);
        // One image of three planes, and three images of one split over two threads.
        let budget = threads::Budget::new(2).unwrap();
        for (images, channels) in [(1, planes), (planes, 1)] {
            let fast =
                threads::with_budget(Some(&budget), || max_pool_2d_f32(&src, &shape, images, channels))
                    .unwrap();
            let differ = general.iter().zip(&fast).position(|(a, b)| a.to_bits() != b.to_bits());
            assert_eq!(
                differ, None,
                "{input:?} -> {out:?} k{kernel:?} s{strides:?} b{begin:?}, {images} images"
            );
        }
    }
    // One image large enough to split into bands of output rows: 24 planes of ResNet's pool,
    // and an odd size with a last window past the input, at one to three threads.
    for (input, out) in [([56, 56], [28, 28]), ([45, 61], [23, 31])] {
        let planes = 24;
        let mut src = values(planes * input[0] * input[1]);
        src[input[1] * 7 + 3] = f32::NAN;
        let shape = Pool2d { input, out, kernel: [3, 3], strides: [2, 2], begin: [1, 1] };
        let general = max_pool_2d(&src, &shape, planes).unwrap();
        for threads in 1..=3 {
            let budget = threads::Budget::new(threads).unwrap();
            let fast =
                threads::with_budget(Some(&budget), || max_pool_2d_f32(&src, &shape, 1, planes)).unwrap();
            let differ = general.iter().zip(&fast).position(|(a, b)| a.to_bits() != b.to_bits());
            assert_eq!(fast.len(), general.len());
            assert_eq!(differ, None, "{input:?} -> {out:?} in bands, {threads} threads");
        }
    }
}

#[test]
fn the_vectorizable_exp_stays_within_one_ulp() {
    let mut worst = 0f64;
    let mut x = -86.9f32;
    while x < 88.72 {
        let (fast, exact) = (exp_f32(x) as f64, (x as f64).exp());
        worst = worst.max(((fast - exact) / exact).abs());
        x += 0.0013;
    }
    // One ulp of f32 is 2^-23 relative.
    assert!(worst < f32::EPSILON as f64, "worst relative error {worst:e}");
    assert_eq!(exp_f32(0.0), 1.0);
    assert_eq!(exp_f32(f32::NEG_INFINITY), 0.0);
    assert_eq!(exp_f32(-100.0), 0.0);
    assert_eq!(exp_f32(f32::INFINITY), f32::INFINITY);
    assert_eq!(exp_f32(89.0), f32::INFINITY);
    assert!(exp_f32(f32::NAN).is_nan());
}

/// Values without NaNs, of every sign and many magnitudes, distinct per index.
fn spread(n: usize, seed: usize) -> Vec<f32> {
    (0..n).map(|i| (((i + seed) * 7919 % 1009) as f32 - 504.0) / 37.0).collect()
}

#[test]
fn broadcasting_arithmetic_equals_candles_bit_for_bit() {
    let shapes: &[(&[usize], &[usize])] = &[
        (&[2, 3, 4, 5], &[2, 3, 4, 5]),
        (&[2, 3, 4, 5], &[]),
        (&[], &[2, 3, 4, 5]),
        (&[2, 3, 4, 5], &[5]),
        (&[2, 3, 4, 5], &[2, 1, 1, 5]),
        (&[2, 3, 4, 5], &[1, 3, 1, 1]),
        (&[2, 3, 4, 5], &[2, 3, 4, 1]),
        (&[3, 1], &[1, 4]),
        (&[1, 4], &[3, 1]),
        (&[4, 1, 6], &[5, 1]),
        (&[1], &[7]),
        (&[2, 0, 3], &[3]),
    ];
    type CandleOp = fn(&CTensor, &CTensor) -> candle_core::Result<CTensor>;
    let ops: [(Arith, CandleOp); 4] = [
        (Arith::Add, CTensor::broadcast_add),
        (Arith::Sub, CTensor::broadcast_sub),
        (Arith::Mul, CTensor::broadcast_mul),
        (Arith::Div, CTensor::broadcast_div),
    ];
    for &(sa, sb) in shapes {
        let na: usize = sa.iter().product();
        let nb: usize = sb.iter().product();
        let a = CTensor::from_vec(spread(na, 1), sa, &Device::Cpu).unwrap();
        let b =
            CTensor::from_vec(spread(nb, 2).iter().map(|v| v + 0.25).collect::<Vec<_>>(), sb, &Device::Cpu)
                .unwrap();
        for (op, candle) in ops {
            for dtype in [CDType::F32, CDType::F64] {
                let (a, b) = (a.to_dtype(dtype).unwrap(), b.to_dtype(dtype).unwrap());
                let ours = broadcast_arith(&a, &b, op).unwrap().expect("float operands");
                let theirs = candle(&a, &b).unwrap();
                assert_eq!(ours.dims(), theirs.dims(), "{op:?} {sa:?} {sb:?}");
                let bits = |t: &CTensor| -> Vec<u64> {
                    t.to_dtype(CDType::F64)
                        .unwrap()
                        .flatten_all()
                        .unwrap()
                        .to_vec1::<f64>()
                        .unwrap()
                        .into_iter()
                        .map(f64::to_bits)
                        .collect()
                };
                assert_eq!(bits(&ours), bits(&theirs), "{op:?} {sa:?} {sb:?} {dtype:?}");
            }
        }
    }
    // Shapes that do not broadcast are left to the general path, and so are the half types.
    let a = CTensor::zeros((2, 3), CDType::F32, &Device::Cpu).unwrap();
    let b = CTensor::zeros((4,), CDType::F32, &Device::Cpu).unwrap();
    assert!(broadcast_arith(&a, &b, Arith::Add).unwrap().is_none());
    let h = a.to_dtype(CDType::F16).unwrap();
    assert!(broadcast_arith(&h, &h, Arith::Add).unwrap().is_none());
    // Runs merge across dims the operands share, and the broadcast dims keep stride 0.
    let (out, w) = walk(&[2, 3, 4, 5], &[2, 1, 1, 5]).unwrap();
    assert_eq!(out, [2, 3, 4, 5]);
    assert_eq!(w, Walk { dims: vec![2, 12, 5], a: vec![60, 5, 1], b: vec![5, 0, 1] });
}

#[test]
fn the_one_pass_layer_norm_equals_normalize_scale_and_bias() {
    let (rows, inner) = (7, 37);
    let x = spread(rows * inner, 3);
    let scale = spread(inner, 4);
    let bias = spread(inner, 5);
    let (y, _, _) = normalize_rows::<f32>(x.clone(), rows, inner, 1e-5);
    let three_pass: Vec<f32> =
        y.chunks(inner).flat_map(|r| r.iter().zip(&scale).zip(&bias).map(|((v, s), b)| v * s + b)).collect();
    let one_pass = layer_norm_f32(&x, inner, &scale, Some(&bias), 1e-5);
    // Statistics summed in a different order (f64 lanes) may move a value by an ulp of f32.
    for (i, (a, b)) in one_pass.iter().zip(&three_pass).enumerate() {
        assert!((a - b).abs() <= 2.0 * f32::EPSILON * b.abs().max(1.0), "element {i}: {a} against {b}");
    }
    let no_bias = layer_norm_f32(&x, inner, &scale, None, 1e-5);
    for (i, (a, b)) in no_bias.iter().zip(one_pass.iter().zip(&bias)).enumerate() {
        assert!((a - (b.0 - b.1)).abs() <= 4.0 * f32::EPSILON * a.abs().max(1.0), "element {i}");
    }
    assert!(layer_norm_f32(&[], 0, &[], None, 1e-5).is_empty());
    // Rows go through each step in blocks: every row gets the bits it gets alone, over a partial
    // block, whole blocks and a partial last one, rows of 1 to 40 values.
    for (rows, inner) in [(7, 37), (40, 32), (33, 1), (17, 8)] {
        let x = spread(rows * inner, inner);
        let (scale, bias) = (spread(inner, 6), spread(inner, 7));
        for bias in [Some(&bias[..]), None] {
            let all = layer_norm_f32(&x, inner, &scale, bias, 1e-5);
            for (r, row) in x.chunks(inner).enumerate() {
                let alone = layer_norm_f32(row, inner, &scale, bias, 1e-5);
                let got = &all[r * inner..(r + 1) * inner];
                assert!(
                    got.iter().zip(&alone).all(|(a, b)| a.to_bits() == b.to_bits()),
                    "{rows} rows of {inner}, row {r}: {got:?} against {alone:?}"
                );
            }
        }
    }
}

#[test]
fn the_direct_convolution_equals_a_plain_sum_at_every_thread_count() {
    if !direct::available() {
        return;
    }
    // (n, c, h, w, m, kh, kw, pads [top, left, bottom, right])
    type Case = (usize, usize, usize, usize, usize, usize, usize, [usize; 4]);
    let cases: &[Case] = &[
        (1, 3, 32, 32, 16, 3, 3, [1, 1, 1, 1]),
        (2, 16, 16, 16, 32, 3, 3, [1, 1, 1, 1]),
        (3, 5, 8, 8, 6, 3, 3, [1, 1, 1, 1]),
        // Rows 8 wide in AVX-512's tiles of two rows per vector where the CPU has them: one
        // image (in bands of the other tiles on two threads, bit for bit), 12 rows (a tile of
        // 4 vectors and one of 2), a 5×3 window over 6 rows (one tile of 3 vectors; blocks of
        // channels in the other tiles on three threads), and 7 rows (not taken: odd).
        (1, 5, 8, 8, 6, 3, 3, [1, 1, 1, 1]),
        (1, 3, 12, 8, 4, 3, 3, [1, 1, 1, 1]),
        (2, 2, 6, 8, 5, 5, 3, [2, 1, 2, 1]),
        (1, 2, 7, 8, 4, 3, 3, [1, 1, 1, 1]),
        (1, 2, 7, 13, 5, 3, 5, [0, 2, 1, 0]),
        (1, 2, 11, 13, 5, 3, 5, [0, 2, 1, 0]),
        (1, 4, 9, 9, 7, 2, 2, [0, 0, 0, 0]),
        (2, 1, 5, 11, 3, 1, 3, [0, 1, 0, 1]),
        (1, 3, 12, 10, 9, 5, 1, [2, 0, 2, 0]),
        // At the depth limit: 128 channels × 3×3 (ResNet-18's 14×14 layers).
        (1, 128, 14, 14, 8, 3, 3, [1, 1, 1, 1]),
    ];
    for &(n, c, h, w, m, kh, kw, pads) in cases {
        let win = window(&[kh, kw], &[1, 1], &[1, 1], &[pads[0], pads[1], pads[2], pads[3]]);
        let geo = geometry(&win, &[h, w]).unwrap();
        assert!(direct::fits(c, &[h, w], kh, kw, &geo), "case {n} {c} {h} {w} {m} {kh} {kw}");
        let mut xs = spread(n * c * h * w, 7);
        xs[3] = f32::NAN;
        let ws = spread(m * c * kh * kw, 8).iter().map(|v| v / 16.0).collect::<Vec<_>>();
        let bias = spread(m, 9);
        let (oh, ow) = (geo.out[0], geo.out[1]);
        let shape = direct::Shape { c, h, w, m, kh, kw };
        for relu in [false, true] {
            let run = |split: &threads::Split<'_>| {
                filled(n * m * oh * ow, |out| {
                    direct::conv(
                        &xs,
                        &direct::pack(&ws, m),
                        Some(&bias),
                        shape,
                        &geo,
                        out,
                        split,
                        finish(relu),
                    )
                })
            };
            let serial = run(&threads::Split::Serial);
            // The same bits on two and three threads, split by image, by bands of rows (of
            // unequal heights on three) or by blocks of channels.
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&serial), bits(&run(&threads::Split::Rayon(2))));
            assert_eq!(bits(&serial), bits(&run(&threads::Split::Rayon(3))));
            let conv = ConvCase { xs: &xs, ws: &ws, bias: &bias, n, m, chw: [c, h, w], window: [kh, kw] };
            conv.check(&serial, [1, 1], [1, 1], [pads[0], pads[1]], [oh, ow], relu, &(n, c, h, w, m, kh, kw));
        }
    }
    // A 1×1 window, rows under 8 positions and strided windows are not the direct kernel's.
    let geo = geometry(&window(&[1, 1], &[1, 1], &[1, 1], &[0, 0, 0, 0]), &[8, 8]).unwrap();
    assert!(!direct::fits(4, &[8, 8], 1, 1, &geo));
    let geo = geometry(&window(&[3, 3], &[1, 1], &[1, 1], &[1, 1, 1, 1]), &[7, 7]).unwrap();
    assert!(!direct::fits(4, &[7, 7], 3, 3, &geo));
    // Nor is a deeper one.
    let geo = geometry(&window(&[3, 3], &[1, 1], &[1, 1], &[1, 1, 1, 1]), &[14, 14]).unwrap();
    assert!(direct::fits(direct::MAX_DEPTH / 9, &[14, 14], 3, 3, &geo));
    assert!(!direct::fits(direct::MAX_DEPTH / 9 + 1, &[14, 14], 3, 3, &geo));
}

#[test]
fn the_direct_convolution_with_its_2x2_max_pool_gives_the_bits_of_the_two_apart() {
    if !direct::available() {
        return;
    }
    // (n, c, h, w, m): one image whole, in bands of rows (of pairs of rows, unequal on three
    // threads) and in blocks of channels; odd rows and columns (the last dropped); several
    // images over the threads.
    // Rows a multiple of 16 wide pool in AVX-512 tiles where the CPU has them: 16 and 32 wide
    // (one and two units per pair of rows), 48 wide (three), channels short of a block, a
    // 5×5 window (a step per offset), and bands of an odd count of pairs on three threads.
    let cases: &[(usize, usize, usize, usize, usize, usize)] = &[
        (1, 3, 32, 32, 16, 3),
        (1, 5, 9, 11, 6, 3),
        (1, 16, 16, 16, 32, 3),
        (1, 4, 6, 8, 8, 3),
        (3, 2, 10, 12, 5, 3),
        (1, 5, 16, 16, 6, 3),
        (2, 4, 14, 48, 7, 3),
        (1, 3, 16, 32, 9, 5),
    ];
    for &(n, c, h, w, m, k) in cases {
        let win = window(&[k, k], &[1, 1], &[1, 1], &[k / 2; 4]);
        let geo = geometry(&win, &[h, w]).unwrap();
        assert!(direct::fits(c, &[h, w], k, k, &geo));
        let mut xs = spread(n * c * h * w, 5);
        xs[7] = f32::NAN;
        xs[c * h * w - 2] = -0.0;
        let ws = spread(m * c * k * k, 6).iter().map(|v| v / 16.0).collect::<Vec<_>>();
        let bias = spread(m, 7);
        let packed = direct::pack(&ws, m);
        let shape = direct::Shape { c, h, w, m, kh: k, kw: k };
        let (oh, ow) = (geo.out[0], geo.out[1]);
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        for relu in [false, true] {
            let full = filled(n * m * oh * ow, |out| {
                direct::conv(
                    &xs,
                    &packed,
                    Some(&bias),
                    shape,
                    &geo,
                    out,
                    &threads::Split::Serial,
                    finish(relu),
                )
            });
            let want = max_pool_2x2(&full, n * m, oh, ow);
            for split in [threads::Split::Serial, threads::Split::Rayon(2), threads::Split::Rayon(3)] {
                let got = filled(n * m * (oh / 2) * (ow / 2), |out| {
                    direct::conv_max_pool_2x2(
                        &xs,
                        &packed,
                        Some(&bias),
                        shape,
                        &geo,
                        out,
                        &split,
                        finish(relu),
                    )
                });
                let case = (n, c, h, w, m, k, relu, split.threads());
                assert_eq!(bits(&got), bits(&want), "{case:?}");
            }
        }
    }
}

/// A 2-D convolution's output `[b, o, y, x]` as an f64 sum in the kernels' order, plus the
/// magnitude of its terms: `(sum, scale)`.
#[allow(clippy::too_many_arguments)]
fn conv_reference(
    xs: &[f32],
    ws: &[f32],
    bias: f32,
    [c, h, w]: [usize; 3],
    [kh, kw]: [usize; 2],
    stride: [usize; 2],
    dilation: [usize; 2],
    [top, left]: [usize; 2],
    [b, o, y, x]: [usize; 4],
) -> (f64, f64) {
    let mut sum = f64::from(bias);
    let mut scale = sum.abs();
    for ch in 0..c {
        for i in 0..kh {
            for j in 0..kw {
                let iy = (y * stride[0] + i * dilation[0]) as isize - top as isize;
                let ix = (x * stride[1] + j * dilation[1]) as isize - left as isize;
                if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                    continue;
                }
                let v = xs[((b * c + ch) * h + iy as usize) * w + ix as usize];
                let term = f64::from(v) * f64::from(ws[((o * c + ch) * kh + i) * kw + j]);
                sum += term;
                scale += term.abs();
            }
        }
    }
    (sum, scale)
}

/// A convolution's operands, for [`ConvCase::check`].
struct ConvCase<'a> {
    xs: &'a [f32],
    ws: &'a [f32],
    bias: &'a [f32],
    n: usize,
    m: usize,
    chw: [usize; 3],
    window: [usize; 2],
}

impl ConvCase<'_> {
    /// Asserts that `got` (`[n, m, oh, ow]`) is the convolution [`conv_reference`] sums,
    /// clamped at zero with `relu`: each output within a few ulps of its terms' magnitude (f32
    /// sums of `c·kh·kw` terms), NaN where the sum is NaN.
    #[allow(clippy::too_many_arguments)]
    fn check(
        &self,
        got: &[f32],
        stride: [usize; 2],
        dilation: [usize; 2],
        corner: [usize; 2],
        [oh, ow]: [usize; 2],
        relu: bool,
        case: &dyn std::fmt::Debug,
    ) {
        let m = self.m;
        for b in 0..self.n {
            for o in 0..m {
                for y in 0..oh {
                    for x in 0..ow {
                        let (mut sum, scale) = conv_reference(
                            self.xs,
                            self.ws,
                            self.bias[o],
                            self.chw,
                            self.window,
                            stride,
                            dilation,
                            corner,
                            [b, o, y, x],
                        );
                        if relu && sum < 0.0 {
                            sum = 0.0;
                        }
                        let got = got[((b * m + o) * oh + y) * ow + x];
                        let at = (case, b, o, y, x, relu);
                        if sum.is_nan() {
                            assert!(got.is_nan(), "{at:?}: {got} for NaN");
                        } else {
                            assert!(
                                (f64::from(got) - sum).abs() <= 1e-6 * scale.max(1.0),
                                "{at:?}: {got} against {sum}"
                            );
                        }
                    }
                }
            }
        }
    }
}

/// The `len` values a kernel writes through `write` into an output that starts as infinities
/// (so that an element it skips shows).
fn filled(len: usize, write: impl FnOnce(&mut [std::mem::MaybeUninit<f32>])) -> Vec<f32> {
    let mut out = vec![std::mem::MaybeUninit::new(f32::INFINITY); len];
    write(&mut out);
    // SAFETY: every element was initialized above.
    out.into_iter().map(|v| unsafe { v.assume_init() }).collect()
}

#[test]
fn the_channel_direct_convolution_equals_a_plain_sum_and_the_row_kernel_bit_for_bit_in_either_tiling() {
    use super::direct_channels as dc;
    if !dc::available() {
        return;
    }
    // (n, c, h, w, m, [kh, kw], stride, dilation, pads [top, left, bottom, right])
    type Case = (usize, usize, usize, usize, usize, [usize; 2], [usize; 2], [usize; 2], [usize; 4]);
    let cases: &[Case] = &[
        // 20 channels (a part-empty block), 100 positions (a part-empty tile); the row kernel
        // takes it too.
        (2, 16, 10, 10, 20, [3, 3], [1, 1], [1, 1], [1, 1, 1, 1]),
        // A padded image past the chunk limit (ResNet's 64-channel layers in small): the
        // steps in two chunks, a tile's sums carried between them; the row kernel takes it too.
        (1, 64, 22, 22, 20, [3, 3], [1, 1], [1, 1], [1, 1, 1, 1]),
        // A ResNet stem in small: 7×7, stride 2, padding 3.
        (1, 3, 23, 23, 16, [7, 7], [2, 2], [1, 1], [3, 3, 3, 3]),
        // Stride 2 on odd sizes, three images.
        (3, 16, 15, 13, 17, [3, 3], [2, 2], [1, 1], [1, 1, 1, 1]),
        // Dilation 2.
        (1, 16, 12, 12, 8, [3, 3], [1, 1], [2, 2], [2, 2, 2, 2]),
        // Uneven strides and padding, a 3×5 window.
        (1, 32, 9, 15, 16, [3, 5], [1, 2], [1, 1], [0, 2, 1, 0]),
        // At the depth limit (ResNet-18's 256-channel layers), two blocks of channels; rows 7
        // wide, in tiles of four rows, two and one.
        (1, dc::MAX_DEPTH / 9, 7, 7, 32, [3, 3], [1, 1], [1, 1], [1, 1, 1, 1]),
        // Rows a multiple of 7 wide, which the AVX-512 row tiles take: 14 wide, two images, a
        // part-empty block; the row kernel takes it too.
        (2, 16, 14, 14, 20, [3, 3], [1, 1], [1, 1], [1, 1, 1, 1]),
        // 28 wide past the chunk limit: sums carried between chunks of steps.
        (1, 64, 28, 28, 20, [3, 3], [1, 1], [1, 1], [1, 1, 1, 1]),
        // A ResNet stem in small, 14 wide at stride 2.
        (1, 3, 28, 28, 16, [7, 7], [2, 2], [1, 1], [3, 3, 3, 3]),
        // 7 wide at stride 2: tiles of four rows of 7, two and one.
        (3, 16, 14, 14, 17, [3, 3], [2, 2], [1, 1], [1, 1, 1, 1]),
        // 21 wide with dilation 2: tiles of four runs of 7 across two rows, then of 14 in one
        // row and of 7.
        (1, 16, 21, 21, 8, [3, 3], [1, 1], [2, 2], [2, 2, 2, 2]),
        // A ResNet shortcut in small: 1×1 at stride 2, no padding, so the image is read in place.
        (2, 32, 14, 14, 20, [1, 1], [2, 2], [1, 1], [0, 0, 0, 0]),
        // No padding on a 3×3 window, 28 wide: read in place, split in bands on two threads.
        (1, 16, 30, 30, 16, [3, 3], [1, 1], [1, 1], [0, 0, 0, 0]),
        // ResNet's 4×4 layers in small: 16 outputs per image, so eight images side by side (on
        // two and three threads, four and two or three each), a part-empty block.
        (8, 64, 4, 4, 20, [3, 3], [1, 1], [1, 1], [1, 1, 1, 1]),
        // No padding down to 4×4: four images side by side, each read where it lies.
        (4, 16, 6, 6, 16, [3, 3], [1, 1], [1, 1], [0, 0, 0, 0]),
        // Eleven images: on one thread in two passes (six and five side by side).
        (11, 16, 4, 4, 16, [3, 3], [1, 1], [1, 1], [1, 1, 1, 1]),
        // Stride 2 down to 4×4, five images side by side.
        (5, 16, 7, 7, 17, [3, 3], [2, 2], [1, 1], [1, 1, 1, 1]),
        // At the depth limit side by side (ResNet-18's 512-channel layers), four images.
        (4, dc::GROUPED_MAX_DEPTH / 9, 4, 4, 16, [3, 3], [1, 1], [1, 1], [1, 1, 1, 1]),
        // 48 outputs per image past the chunk limit: two images side by side, each tile's sums
        // carried between chunks of steps.
        (2, dc::GROUPED_MAX_DEPTH / 9, 6, 8, 16, [3, 3], [1, 1], [1, 1], [1, 1, 1, 1]),
    ];
    for &(n, c, h, w, m, [kh, kw], stride, dilation, pads) in cases {
        let win = window(&[kh, kw], &stride, &dilation, &pads);
        let geo = geometry(&win, &[h, w]).unwrap();
        let shape = dc::Shape { c, h, w, m, kh, kw, stride, dilation };
        let case = (n, c, h, w, m, kh, kw, stride, dilation);
        assert!(dc::fits(&shape, &geo, n), "{case:?}");
        let mut xs = spread(n * c * h * w, 7);
        xs[5] = f32::NAN;
        let ws = spread(m * c * kh * kw, 8).iter().map(|v| v / 16.0).collect::<Vec<_>>();
        let bias = spread(m, 9);
        let (oh, ow) = (geo.out[0], geo.out[1]);
        // The first element whose bits differ, if any.
        let differ = |a: &[f32], b: &[f32]| a.iter().zip(b).position(|(x, y)| x.to_bits() != y.to_bits());
        for relu in [false, true] {
            let run = |split: &threads::Split<'_>| {
                filled(n * m * oh * ow, |out| {
                    dc::conv(&xs, &dc::pack(&ws, m), Some(&bias), shape, &geo, out, split, finish(relu))
                })
            };
            let serial = run(&threads::Split::Serial);
            // The same bits on two threads, split by image or by blocks of channels.
            assert_eq!(differ(&serial, &run(&threads::Split::Rayon(2))), None, "{case:?}");
            assert_eq!(differ(&serial, &run(&threads::Split::Rayon(3))), None, "{case:?}");
            // Where the CPU and the rows take the AVX-512 row tiles, the same bits as in sixes.
            let tiling = dc::tiling(&shape, &geo);
            #[cfg(target_arch = "x86_64")]
            let avx512 = std::is_x86_feature_detected!("avx512f");
            #[cfg(not(target_arch = "x86_64"))]
            let avx512 = false;
            let wide = avx512 && ow % 7 == 0 && stride[1] <= 2;
            assert_eq!(tiling == dc::Tiling::Rows, wide, "{case:?}");
            if tiling == dc::Tiling::Rows {
                let sixes = filled(n * m * oh * ow, |out| {
                    let (packed, split) = (dc::pack(&ws, m), threads::Split::Serial);
                    let tiling = dc::Tiling::Sixes;
                    dc::conv_tiled(&xs, &packed, Some(&bias), shape, &geo, out, &split, finish(relu), tiling)
                });
                assert_eq!(differ(&serial, &sixes), None, "{case:?}");
            }
            // And the row kernel's bits where it takes the convolution too.
            if stride == [1, 1] && dilation == [1, 1] && direct::fits(c, &[h, w], kh, kw, &geo) {
                let row_shape = direct::Shape { c, h, w, m, kh, kw };
                let split = threads::Split::Serial;
                let rows = filled(n * m * oh * ow, |out| {
                    direct::conv(
                        &xs,
                        &direct::pack(&ws, m),
                        Some(&bias),
                        row_shape,
                        &geo,
                        out,
                        &split,
                        finish(relu),
                    )
                });
                assert_eq!(differ(&serial, &rows), None, "{case:?}");
            }
            let conv = ConvCase { xs: &xs, ws: &ws, bias: &bias, n, m, chw: [c, h, w], window: [kh, kw] };
            conv.check(&serial, stride, dilation, [pads[0], pads[1]], [oh, ow], relu, &case);
        }
    }
    // Refused: a 1×1 window of stride 1, fewer than 49 outputs (per batch, side by side), a
    // deeper window, a padded image past the limit, a strided 1×1 window on small images.
    let refused_in = |s: dc::Shape, pads: [usize; 4], n: usize| {
        let geo = geometry(&window(&[s.kh, s.kw], &s.stride, &s.dilation, &pads), &[s.h, s.w]).unwrap();
        !dc::fits(&s, &geo, n)
    };
    let refused = |s: dc::Shape, pads: [usize; 4]| refused_in(s, pads, 1);
    let shape = |c, h, w, k| dc::Shape { c, h, w, m: 16, kh: k, kw: k, stride: [1, 1], dilation: [1, 1] };
    assert!(refused(shape(16, 8, 8, 1), [0; 4]));
    assert!(refused(shape(16, 6, 8, 3), [1; 4]));
    assert!(!refused(shape(16, 7, 7, 3), [1; 4]));
    assert!(refused(shape(dc::MAX_DEPTH / 9 + 1, 7, 7, 3), [1; 4]));
    assert!(refused(shape(64, 40, 40, 3), [1; 4]));
    // 4×4 images: three (48 outputs) refused, four taken, up to the side-by-side depth limit.
    assert!(refused_in(shape(16, 4, 4, 3), [1; 4], 3));
    assert!(!refused_in(shape(16, 4, 4, 3), [1; 4], 4));
    assert!(!refused_in(shape(dc::GROUPED_MAX_DEPTH / 9, 4, 4, 3), [1; 4], 8));
    assert!(refused_in(shape(dc::GROUPED_MAX_DEPTH / 9 + 1, 4, 4, 3), [1; 4], 8));
    // 7×7 images go one at a time, to the one-image depth limit whatever the batch.
    assert!(refused_in(shape(dc::MAX_DEPTH / 9 + 1, 7, 7, 3), [1; 4], 8));
    // A 1×1 window of stride 2 onto 4×4 outputs: not side by side, so refused.
    let point = dc::Shape { stride: [2, 2], ..shape(64, 8, 8, 1) };
    assert!(refused_in(point, [0; 4], 8));
}

#[test]
fn the_channel_kernels_tiles_cover_each_position_once_in_fives_and_sixes_where_they_can() {
    use super::direct_channels::tiles;
    for len in 1..200 {
        let tiles = tiles(len);
        // In order, each position once.
        let mut next = 0;
        for &(at, n) in &tiles {
            assert_eq!(at, next, "{len}: {tiles:?}");
            next += n;
        }
        assert_eq!(next, len, "{len}: {tiles:?}");
        let short = tiles.iter().filter(|(_, n)| *n < 5).count();
        // A tile shorter than 5 only where no mix of fives and sixes makes `len` (below 25:
        // 1–4, 7–9, 13, 14 and 19), and then only the last.
        let mixes = (0..=len / 5).any(|fives| (len - 5 * fives) % 6 == 0);
        assert_eq!(short, usize::from(!mixes), "{len}: {tiles:?}");
        assert!(tiles[..tiles.len() - 1].iter().all(|(_, n)| *n >= 5), "{len}: {tiles:?}");
    }
    assert_eq!(tiles(49), [(0, 6), (6, 6), (12, 6), (18, 6), (24, 5), (29, 5), (34, 5), (39, 5), (44, 5)]);
    assert_eq!(tiles(7), [(0, 6), (6, 1)]);
}

#[test]
fn the_row_kernels_tiles_leave_no_vector_alone_but_a_lone_one() {
    for vectors in 1..100 {
        let (threes, twos) = direct::tile_counts(vectors);
        let lone = vectors - 3 * threes - 2 * twos;
        assert!(lone <= 1 && twos <= 2, "{vectors}: {threes} threes, {twos} twos");
        assert_eq!(lone == 1, vectors == 1, "{vectors}: {threes} threes, {twos} twos");
        // As many threes as leave a whole number of twos.
        assert_eq!(threes, if vectors % 3 == 1 && vectors > 1 { (vectors - 4) / 3 } else { vectors / 3 });
    }
}

#[test]
fn each_convolution_goes_to_the_kernel_measured_fastest_for_it() {
    use super::direct_channels as dc;
    if !dc::available() {
        return;
    }
    // (c, h, w, m, k, stride, pads) and the kernel.
    type Layer = (usize, usize, usize, usize, usize, usize, usize);
    let cases: &[(Layer, Option<Direct>)] = &[
        // The bundled CNN: rows 32, 16 and 8 wide.
        ((3, 32, 32, 16, 3, 1, 1), Some(Direct::Rows)),
        ((16, 16, 16, 32, 3, 1, 1), Some(Direct::Rows)),
        ((32, 8, 8, 32, 3, 1, 1), Some(Direct::Rows)),
        // ResNet-18 at 112×112, batch 1: the stem, the 28-, 14- and 7-wide 3×3 layers, the
        // stride-2 ones, and the 512-channel layers on 4×4 (gemm).
        ((3, 112, 112, 64, 7, 2, 3), Some(Direct::Channels)),
        ((64, 28, 28, 64, 3, 1, 1), Some(Direct::Channels)),
        ((128, 14, 14, 128, 3, 1, 1), Some(Direct::Channels)),
        ((256, 7, 7, 256, 3, 1, 1), Some(Direct::Channels)),
        ((64, 28, 28, 128, 3, 2, 1), Some(Direct::Channels)),
        ((256, 7, 7, 512, 3, 2, 1), None),
        ((512, 4, 4, 512, 3, 1, 1), None),
        // A shallow window on rows that are not a multiple of 8: the row kernel.
        ((4, 10, 10, 8, 3, 1, 1), Some(Direct::Rows)),
        // 1×1: gemm.
        ((64, 28, 28, 64, 1, 1, 0), None),
    ];
    // A 1×1 window of stride 2 (ResNet's shortcuts): the channel kernel however shallow, but
    // for a 4×4 output (16 positions): gemm.
    let point = |c, h, m| ((c, h, h, m, 1, 2, 0), Some(Direct::Channels));
    let points = [point(64, 28, 128), point(128, 14, 256), ((256, 7, 7, 512, 1, 2, 0), None)];
    for &((c, h, w, m, k, s, pad), ref want) in cases.iter().chain(&points) {
        let geo = geometry(&window(&[k, k], &[s, s], &[1, 1], &[pad; 4]), &[h, w]).unwrap();
        let shape = dc::Shape { c, h, w, m, kh: k, kw: k, stride: [s, s], dilation: [1, 1] };
        assert_eq!(&direct_kernel(&shape, &geo, 1), want, "{:?}", (c, h, w, m, k, s));
        // At batch 8 the same, but the 3×3 layers on 4×4 go to the channel kernel, images
        // side by side.
        let want =
            if (h, k) == (7, 3) && s == 2 || (h, k) == (4, 3) { &Some(Direct::Channels) } else { want };
        assert_eq!(&direct_kernel(&shape, &geo, 8), want, "batch 8: {:?}", (c, h, w, m, k, s));
    }
}

#[test]
fn relu_keeps_nan_and_matches_the_fused_relu_bit_for_bit() {
    // More than 64 Ki values (where Candle's own relu hands the work to its pool), with NaNs,
    // both zeros and negatives.
    let mut xs = values(70_000);
    xs[1] = -0.0;
    xs[2] = 0.0;
    let x = CTensor::from_vec(xs.clone(), (7, 10_000), &Device::Cpu).unwrap();
    let y: Vec<f32> = relu(&x).unwrap().expect("float32").flatten_all().unwrap().to_vec1().unwrap();
    let mut fused = xs.clone();
    bias_relu(&mut fused, None, xs.len(), true);
    let differ = y.iter().zip(&fused).position(|(a, b)| a.to_bits() != b.to_bits());
    assert_eq!(differ, None);
    // Split by images over two threads: the same bits.
    let budget = threads::Budget::new(2).unwrap();
    let split = threads::with_budget(Some(&budget), || relu(&x)).unwrap().expect("float32");
    let split: Vec<f32> = split.flatten_all().unwrap().to_vec1().unwrap();
    assert_eq!(split.iter().zip(&y).position(|(a, b)| a.to_bits() != b.to_bits()), None);
    assert!(y[5].is_nan() && xs[5].is_nan(), "NaN stays NaN");
    assert_eq!(y.iter().filter(|v| **v < 0.0).count(), 0);
    assert_eq!((y[1].to_bits(), y[2].to_bits()), ((-0f32).to_bits(), 0f32.to_bits()));
    // Float64 too; other types are Candle's.
    let x64 = CTensor::from_vec(vec![-1.5f64, f64::NAN, 2.0], 3, &Device::Cpu).unwrap();
    let y64: Vec<f64> = relu(&x64).unwrap().expect("float64").to_vec1().unwrap();
    assert!(y64[0] == 0.0 && y64[1].is_nan() && y64[2] == 2.0);
    let half = x64.to_dtype(CDType::F16).unwrap();
    assert!(relu(&half).unwrap().is_none());
}

#[test]
fn candle_maps_under_a_thread_count_stay_below_candles_pool_and_give_the_same_bits() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let n = 3 * 44_000;
    assert!(n > 2 * threads::CANDLE_POOLED_VALUES);
    let xs: Vec<f32> = (0..n).map(|i| (i % 1000) as f32 / 100.0 - 5.0).collect();
    let x = CTensor::from_vec(xs, (3, n / 3), &Device::Cpu).unwrap();
    let whole = x.exp().unwrap();
    let bits = |t: &CTensor| {
        t.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    };
    for threads in [1, 2] {
        let budget = threads::Budget::new(threads).unwrap();
        let largest = AtomicUsize::new(0);
        let calls = AtomicUsize::new(0);
        let y = threads::with_budget(Some(&budget), || {
            threads::candle_map(&x, |v| {
                largest.fetch_max(v.elem_count(), Ordering::Relaxed);
                calls.fetch_add(1, Ordering::Relaxed);
                v.exp()
            })
        })
        .unwrap();
        assert!(largest.load(Ordering::Relaxed) < threads::CANDLE_POOLED_VALUES, "{threads} threads");
        assert!(calls.load(Ordering::Relaxed) > 2);
        assert_eq!(y.dims(), x.dims());
        assert_eq!(bits(&y), bits(&whole), "{threads} threads");
    }
    // Without a thread count the map takes the tensor whole; a small one is whole either way.
    let calls = AtomicUsize::new(0);
    let y = threads::candle_map(&x, |v| {
        calls.fetch_add(1, Ordering::Relaxed);
        assert_eq!(v.elem_count(), n);
        v.exp()
    })
    .unwrap();
    assert_eq!((calls.load(Ordering::Relaxed), bits(&y) == bits(&whole)), (1, true));
    // An error inside a slice comes back as the map's error.
    let budget = threads::Budget::new(1).unwrap();
    let err =
        threads::with_budget(Some(&budget), || threads::candle_map(&x, |v| v.reshape((7, 7)))).unwrap_err();
    assert!(err.to_string().contains("shape mismatch") || err.to_string().contains("reshape"), "{err}");
}

#[test]
fn same_shape_arithmetic_split_by_images_equals_candles_bit_for_bit() {
    // Five images of 30,000 values (past the size where the images split over threads).
    let (xs, ys) = (values(150_000), spread(150_000, 3));
    let a = CTensor::from_vec(xs, (5, 100, 300), &Device::Cpu).unwrap();
    let b = CTensor::from_vec(ys, (5, 100, 300), &Device::Cpu).unwrap();
    let bits = |t: &CTensor| {
        t.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    };
    let budget = threads::Budget::new(2).unwrap();
    for (op, want) in [
        (Arith::Add, (&a + &b).unwrap()),
        (Arith::Sub, (&a - &b).unwrap()),
        (Arith::Mul, (&a * &b).unwrap()),
        (Arith::Div, (&a / &b).unwrap()),
    ] {
        for budget in [None, Some(&budget)] {
            let got = threads::with_budget(budget, || broadcast_arith(&a, &b, op)).unwrap().expect("float32");
            assert_eq!(got.dims(), want.dims());
            assert!(bits(&got) == bits(&want), "{op:?}, {} threads", budget.map_or(0, |b| b.threads));
        }
    }
}

#[test]
fn global_average_pooling_is_the_f64_mean_at_every_thread_count() {
    let (images, channels, plane) = (5, 3, 7 * 7);
    let mut src = spread(images * channels * plane, 3);
    src[plane + 4] = f32::NAN;
    // Each plane's mean: the f64 sum in order, times 1 / plane, rounded to f32.
    let want: Vec<f32> = src
        .chunks_exact(plane)
        .map(|p| (p.iter().fold(0f64, |s, &v| s + f64::from(v)) * (1.0 / plane as f64)) as f32)
        .collect();
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    for threads in [1, 2, 3] {
        let budget = threads::Budget::new(threads).unwrap();
        let got = threads::with_budget(Some(&budget), || global_average_f32(&src, images, channels, plane));
        assert_eq!(bits(&got), bits(&want), "{threads} thread(s)");
    }
    assert!(want[1].is_nan() && !want[0].is_nan());
    // Candle's mean of the values as f64 agrees.
    let x = CTensor::from_vec(src.clone(), (images, channels, plane), &Device::Cpu).unwrap();
    let candle = x.to_dtype(CDType::F64).unwrap().mean_keepdim(2).unwrap().to_dtype(CDType::F32).unwrap();
    let candle: Vec<f32> = candle.flatten_all().unwrap().to_vec1().unwrap();
    for (i, (a, b)) in candle.iter().zip(&want).enumerate() {
        assert!(
            a.to_bits() == b.to_bits() || (a - b).abs() <= f32::EPSILON * b.abs(),
            "plane {i}: {a} against {b}"
        );
    }
    // Nothing to pool: an empty result, not a panic.
    assert!(global_average_f32(&[], 0, 3, plane).is_empty());
}

#[test]
fn a_large_gemm_gives_the_same_bits_at_every_thread_count_in_column_blocks_and_on_panels() {
    // ResNet-18's classifier at batch 8 (4.1 million multiply-adds: four blocks of 250 columns
    // on the gemm crate) and at batch 1; a product whose last panel is 5 columns wide; and one
    // of 9 rows, which no panel takes.
    for (m, k, n) in [(8, 512, 1000), (1, 512, 1000), (5, 300, 37), (9, 300, 37)] {
        assert!(m * k * n > SMALL_GEMM_MACS);
        let a = CTensor::from_vec(spread(m * k, 1), (m, k), &Device::Cpu).unwrap();
        let b_values: Vec<f32> = spread(k * n, 2).iter().map(|v| v / 64.0).collect();
        // B transposed in storage, as a Gemm with transB reads it; laid out row by row, as a
        // constant B is at load, for the panels.
        let b = CTensor::from_vec(b_values.clone(), (n, k), &Device::Cpu).unwrap().t().unwrap();
        let b_rows = pad_columns(b.contiguous().unwrap()).unwrap();
        let c = CTensor::from_vec(spread(n, 5), n, &Device::Cpu).unwrap();
        let bits = |t: &CTensor| -> Vec<u32> {
            t.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().map(|x| x.to_bits()).collect()
        };
        for (relu, panels) in [(false, false), (true, false), (false, true), (true, true)] {
            let made = Panels::default();
            let (b, panels) = if panels { (&b_rows, Some(&made)) } else { (&b, None) };
            let run = |threads: Option<usize>| {
                let budget = threads.map(|t| threads::Budget::new(t).unwrap());
                threads::with_budget(budget.as_ref(), || {
                    gemm_op::<f32>(&a, b, Some(&c), 1.0, 1.0, relu, panels)
                })
                .unwrap()
            };
            let one = run(Some(1));
            for threads in [Some(2), Some(3), None] {
                assert_eq!(bits(&one), bits(&run(threads)), "{m}×{k}×{n}: {threads:?} threads, relu {relu}");
            }
            let case = format!("{m}×{k}×{n}, panels {}", panels.is_some());
            assert_eq!(made.made(), panels.is_some() && m <= 8, "{case}: panels made");
            // Against a plain f64 sum.
            let (av, bias) = (spread(m * k, 1), spread(n, 5));
            let got: Vec<f32> = one.flatten_all().unwrap().to_vec1().unwrap();
            for i in 0..m {
                for j in 0..n {
                    let mut sum = f64::from(bias[j]);
                    let mut scale = sum.abs();
                    for p in 0..k {
                        let term = f64::from(av[i * k + p]) * f64::from(b_values[j * k + p]);
                        sum += term;
                        scale += term.abs();
                    }
                    if relu && sum < 0.0 {
                        sum = 0.0;
                    }
                    // An f32 sum of k terms: within k ulps of the terms' magnitude.
                    let g = f64::from(got[i * n + j]);
                    let bound = k as f64 * f64::from(f32::EPSILON) * scale.max(1.0);
                    assert!((g - sum).abs() <= bound, "{case} [{i}, {j}]: {g} against {sum}");
                }
            }
        }
    }
}

/// [`conv_general`] without a residual, which always gives an output.
#[allow(clippy::too_many_arguments)]
fn conv_plain(
    x: &CTensor,
    w: &CTensor,
    bias: Option<&CTensor>,
    win: &Window,
    group: usize,
    cache: &GeometryCache,
    relu: bool,
) -> candle_core::Result<CTensor> {
    conv_general(x, w, bias, win, group, cache, relu, None, false).map(|y| y.expect("an output"))
}

/// A direct kernel's finish: the Relu alone.
fn finish(relu: bool) -> super::conv::Finish<'static> {
    super::conv::Finish { relu, ..Default::default() }
}

#[test]
fn softmax_of_contiguous_lines_in_blocks_equals_each_line_alone_bit_for_bit() {
    use super::softmax::{softmax_line, softmax_rows};
    // Line lengths below, at and above the block's sizes (2048 / d lines of d, 1 to 64), and a
    // count of lines that leaves a short last block.
    for d in [1usize, 3, 8, 24, 31, 100, 2048, 3000] {
        let lines = 2048 / d + 70;
        let mut v: Vec<f32> = spread(lines * d, d).iter().map(|x| x * 3.0).collect();
        // Lines with NaN, infinities, all minus infinity, and values past exp's range.
        v[0] = f32::NAN;
        if lines > 3 {
            v[d] = f32::INFINITY;
            v[2 * d..3 * d].fill(f32::NEG_INFINITY);
            v[3 * d] = 120.0;
            v[(3 * d + 1).min(4 * d - 1)] = -120.0;
        }
        let mut want = v.clone();
        for line in want.chunks_exact_mut(d) {
            softmax_line(line, false);
        }
        let dims = [lines, d];
        crate::kernels::wide(super::softmax::SoftmaxRows { v: &mut v, dims: &dims, dim: 1, log: false });
        for (i, (g, w)) in v.iter().zip(&want).enumerate() {
            assert!(g.to_bits() == w.to_bits(), "d {d}, value {i}: {g} against {w}");
        }
        // And a plain f64 softmax of an ordinary line, within f32 rounding.
        let line = &spread(d, d + 1)[..];
        let max = line.iter().fold(f64::NEG_INFINITY, |m, &x| m.max(f64::from(x)));
        let sum: f64 = line.iter().map(|&x| (f64::from(x) - max).exp()).sum();
        let mut one = line.to_vec();
        softmax_rows(&mut one, &[1, d], 1, false);
        for (g, &x) in one.iter().zip(line) {
            let exact = (f64::from(x) - max).exp() / sum;
            // f32 rounds x - max to within half an ulp of it, which e^(x - max) scales by
            // |x - max|; then a few roundings more.
            let spread_ulps = 4.0 + (f64::from(x) - max).abs();
            let bound = spread_ulps * f64::from(f32::EPSILON) * exact.max(1e-30);
            assert!((f64::from(*g) - exact).abs() <= bound, "d {d}: {g} against {exact}");
        }
    }
}

#[test]
fn padded_images_kept_between_runs_give_the_bits_of_new_ones() {
    use super::direct_channels as dc;
    if !direct::available() {
        return;
    }
    // 8-wide images padded to 10 × 10 by one on every side, and by two at the top and left
    // (the same buffer size, the input at another place), then heights 8 to 17: more layouts
    // than a thread keeps. Three passes with new values each time, every convolution on this
    // thread, whose kept buffers were padded before with other values or layouts, against the
    // same on a new thread, whose buffers are all new.
    let mut layouts: Vec<(usize, [usize; 4])> = vec![(8, [1, 1, 1, 1]), (8, [2, 2, 0, 0])];
    layouts.extend((9..18).map(|h| (h, [1, 1, 1, 1])));
    let (c, w, m) = (3, 8, 5);
    let ws = spread(m * c * 9, 8).iter().map(|v| v / 16.0).collect::<Vec<_>>();
    let bias = spread(m, 9);
    let run = |xs: &[f32], h: usize, pads: [usize; 4], channels: bool| -> Vec<f32> {
        let geo = geometry(&window(&[3, 3], &[1, 1], &[1, 1], &pads), &[h, w]).unwrap();
        let len = m * geo.out[0] * geo.out[1];
        let split = threads::Split::Serial;
        if channels {
            let shape = dc::Shape { c, h, w, m, kh: 3, kw: 3, stride: [1, 1], dilation: [1, 1] };
            assert!(dc::fits(&shape, &geo, 1));
            filled(len, |out| {
                dc::conv(xs, &dc::pack(&ws, m), Some(&bias), shape, &geo, out, &split, finish(false))
            })
        } else {
            let shape = direct::Shape { c, h, w, m, kh: 3, kw: 3 };
            assert!(direct::fits(c, &[h, w], 3, 3, &geo));
            filled(len, |out| {
                direct::conv(xs, &direct::pack(&ws, m), Some(&bias), shape, &geo, out, &split, finish(false))
            })
        }
    };
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    for pass in 0..3 {
        for &(h, pads) in &layouts {
            let xs = spread(c * h * w, 11 + pass * 31 + h);
            for channels in [false, true] {
                if channels && h * w < 49 {
                    continue;
                }
                let kept = run(&xs, h, pads, channels);
                let new = std::thread::scope(|s| s.spawn(|| run(&xs, h, pads, channels)).join().unwrap());
                assert_eq!(
                    bits(&kept),
                    bits(&new),
                    "pass {pass}, height {h}, pads {pads:?}, channels {channels}"
                );
                if pass == 2 {
                    let conv =
                        ConvCase { xs: &xs, ws: &ws, bias: &bias, n: 1, m, chw: [c, h, w], window: [3, 3] };
                    let out = [h + pads[0] + pads[2] - 2, w + pads[1] + pads[3] - 2];
                    conv.check(&kept, [1, 1], [1, 1], [pads[0], pads[1]], out, false, &(h, pads, channels));
                }
            }
        }
    }
}

#[test]
fn row_bands_kept_between_runs_give_the_sums_of_the_shape_they_run() {
    if !direct::available() {
        return;
    }
    // The row kernel keeps the offsets and vectors of the last bands it built, by channels,
    // window, output width and rows. Shapes that differ in one of those at a time, more than
    // a thread keeps, each run twice in turn on this thread against a plain sum.
    let shapes: &[(usize, usize, usize, usize, usize)] = &[
        (3, 8, 8, 3, 3),
        (4, 8, 8, 3, 3),
        (3, 9, 8, 3, 3),
        (3, 8, 9, 3, 3),
        (3, 8, 10, 3, 3),
        (3, 8, 8, 5, 3),
        (3, 8, 8, 3, 5),
        (3, 8, 8, 5, 5),
        (2, 8, 8, 3, 3),
        (3, 10, 8, 3, 3),
    ];
    let m = 5;
    for pass in 0..2 {
        for (at, &(c, h, w, kh, kw)) in shapes.iter().enumerate() {
            let pads = [kh / 2, kw / 2, kh / 2, kw / 2];
            let geo = geometry(&window(&[kh, kw], &[1, 1], &[1, 1], &pads), &[h, w]).unwrap();
            assert!(direct::fits(c, &[h, w], kh, kw, &geo), "{c} {h} {w} {kh} {kw}");
            let xs = spread(c * h * w, 5 + at + 17 * pass);
            let ws = spread(m * c * kh * kw, 7 + at).iter().map(|v| v / 16.0).collect::<Vec<_>>();
            let bias = spread(m, 3);
            let shape = direct::Shape { c, h, w, m, kh, kw };
            let out = filled(m * h * w, |out| {
                direct::conv(
                    &xs,
                    &direct::pack(&ws, m),
                    Some(&bias),
                    shape,
                    &geo,
                    out,
                    &threads::Split::Serial,
                    finish(false),
                )
            });
            let conv = ConvCase { xs: &xs, ws: &ws, bias: &bias, n: 1, m, chw: [c, h, w], window: [kh, kw] };
            conv.check(&out, [1, 1], [1, 1], [pads[0], pads[1]], [h, w], false, &(pass, c, h, w, kh, kw));
        }
    }
}

#[test]
fn a_two_thread_model_times_both_ways_for_mid_sized_kernels_alone_with_the_same_bits() {
    use super::tune::{Way, MID_MACS, TURN, WARM_RUNS};
    // The bundled CNN's second convolution (1.2 million multiply-adds, mid-sized) with its Relu
    // and 2×2 max pool after, and a small convolution (under MID_MACS) with its pool.
    let conv = |c: usize, hw: usize, m: usize| {
        let x = CTensor::from_vec(spread(c * hw * hw, 3), (1, c, hw, hw), &Device::Cpu).unwrap();
        let ws = spread(m * c * 9, 4).iter().map(|v| v / 16.0).collect::<Vec<_>>();
        let w = CTensor::from_vec(ws, (m, c, 3, 3), &Device::Cpu).unwrap();
        let b = CTensor::from_vec(spread(m, 5), m, &Device::Cpu).unwrap();
        (x, w, b, hw, m)
    };
    let mid = conv(16, 16, 32);
    let small = conv(3, 8, 8);
    const { assert!(16 * 9 * 32 * 256 > MID_MACS && 3 * 9 * 8 * 64 <= MID_MACS) };
    let win = window(&[3, 3], &[1, 1], &[1, 1], &[1, 1, 1, 1]);
    let cache = GeometryCache::default();
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<u32>>();
    let run = |budget: &threads::Budget, (x, w, b, hw, m): &(CTensor, CTensor, CTensor, usize, usize)| {
        threads::with_budget(Some(budget), || {
            let y = conv_plain(x, w, Some(b), &win, 1, &cache, true).unwrap();
            let y: Vec<f32> = y.flatten_all().unwrap().to_vec1().unwrap();
            let shape =
                Pool2d { input: [*hw; 2], out: [hw / 2; 2], kernel: [2, 2], strides: [2, 2], begin: [0, 0] };
            let pooled = max_pool_2d_f32(&y, &shape, 1, *m).unwrap();
            (bits(&y), bits(&pooled))
        })
    };
    let one = threads::Budget::new(1).unwrap();
    let (mid_bits, small_bits) = (run(&one, &mid), run(&one, &small));
    let two = threads::Budget::new(2).unwrap();
    // Runs of small kernels alone do not count toward the warm-up.
    for _ in 0..2 * WARM_RUNS {
        assert!(run(&two, &small) == small_bits);
    }
    assert_eq!(two.settled_way(), Some(Way::Caller));
    // The warm-up's runs on the calling thread, then a trial of both ways (the convolution and
    // the pool split by bands of rows in the split runs), each with the bits of one thread.
    for _ in 0..WARM_RUNS {
        assert!(run(&two, &mid) == mid_bits);
    }
    assert_eq!(two.settled_way(), None, "a trial after the warm-up");
    // Runs on the calling thread tell the polling worker to park; a split wakes it.
    for _ in 0..4 * TURN {
        let (way, _) = two.next_way_and_resting();
        assert!(run(&two, &mid) == mid_bits);
        assert_eq!(two.next_way_and_resting().1, way == Way::Caller, "resting after a {way:?} run");
    }
    assert!(two.settled_way().is_some(), "a way settled after the trial");
}

#[test]
fn runs_that_split_a_large_kernel_after_a_mid_sized_one_split_their_mid_sized_kernels() {
    use super::gemm::SERIAL_GEMM_MACS;
    use super::tune::{Way, MID_MACS, TURN, WARM_RUNS};
    let conv = |c: usize, hw: usize, m: usize| {
        let x = CTensor::from_vec(spread(c * hw * hw, 3), (1, c, hw, hw), &Device::Cpu).unwrap();
        let ws = spread(m * c * 9, 4).iter().map(|v| v / 16.0).collect::<Vec<_>>();
        let w = CTensor::from_vec(ws, (m, c, 3, 3), &Device::Cpu).unwrap();
        let b = CTensor::from_vec(spread(m, 5), m, &Device::Cpu).unwrap();
        (x, w, b)
    };
    // A mid-sized convolution (1.2 million multiply-adds) and a large one (9.4 million).
    let (mid, large) = (conv(16, 16, 32), conv(32, 32, 32));
    const {
        assert!(16 * 9 * 32 * 256 > MID_MACS && 16 * 9 * 32 * 256 <= SERIAL_GEMM_MACS);
        assert!(32 * 9 * 32 * 1024 > SERIAL_GEMM_MACS);
        assert!(WARM_RUNS.is_multiple_of(2) && 5 < 4 * TURN);
    };
    let win = window(&[3, 3], &[1, 1], &[1, 1], &[1, 1, 1, 1]);
    let cache = GeometryCache::default();
    type Case = (CTensor, CTensor, CTensor);
    let run = |budget: &threads::Budget, kernels: &[&Case]| -> Vec<Vec<u32>> {
        threads::with_budget(Some(budget), || {
            kernels
                .iter()
                .map(|(x, w, b)| {
                    let y = conv_plain(x, w, Some(b), &win, 1, &cache, true).unwrap();
                    y.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().map(|v| v.to_bits()).collect()
                })
                .collect()
        })
    };
    let one = threads::Budget::new(1).unwrap();
    let (mid_bits, large_bits) = (run(&one, &[&mid]).remove(0), run(&one, &[&large]).remove(0));
    // The large kernel first and the mid-sized one last, as in the bundled CNN: a run on the
    // calling thread (every run of the warm-up is) tells the workers to rest at its mid-sized
    // kernel, since none of its kernels needs them after it.
    let first_large = threads::Budget::new(2).unwrap();
    for _ in 0..3 {
        assert!(run(&first_large, &[&large, &mid]) == [large_bits.clone(), mid_bits.clone()]);
        assert_eq!(first_large.next_way_and_resting(), (Way::Caller, true));
    }
    // A mid-sized kernel before a large one, as ResNet-18's shortcuts come before its 3×3
    // layers at batch 1: the first run (of the warm-up, on the calling thread) rests the
    // workers at its mid-sized kernel; once it has split after that kernel, later runs split
    // their mid-sized kernels too, in the warm-up as after it, and leave the workers polling.
    let mid_first = threads::Budget::new(2).unwrap();
    assert_eq!(mid_first.next_way_and_resting(), (Way::Caller, false));
    assert!(run(&mid_first, &[&mid, &large]) == [mid_bits.clone(), large_bits.clone()]);
    for _ in 0..WARM_RUNS / 2 + 2 {
        assert_eq!(mid_first.next_way_and_resting(), (Way::Split, false));
        assert!(run(&mid_first, &[&mid]) == [mid_bits.clone()]);
        assert!(run(&mid_first, &[&mid, &large]) == [mid_bits.clone(), large_bits.clone()]);
    }
    // The tuner counted only the first run: it is still in its warm-up, where counting all
    // (the warm-up's runs and 5 more) would have started a trial.
    assert_eq!(mid_first.settled_way(), Some(Way::Caller));
}
