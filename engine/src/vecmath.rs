//! Vector arithmetic the engine does itself (FAISS does the rest): one norm and one
//! normalisation, so that validation, the index, trials and the embedders agree to the
//! bit on what a unit vector is.

/// Euclidean norm, summed in f64 so that neither tiny nor large components under- or
/// overflow on the way (an f32 sum of 1e-23 squares is 0, of 1e20 squares infinite).
pub(crate) fn norm(v: &[f32]) -> f64 {
    v.iter().map(|&x| f64::from(x) * f64::from(x)).sum::<f64>().sqrt()
}

/// Scale `v` to unit length; left as is when its norm is zero or not finite.
pub(crate) fn normalize(v: &mut [f32]) {
    let n = norm(v);
    if n > 0.0 && n.is_finite() {
        v.iter_mut().for_each(|x| *x = (f64::from(*x) / n) as f32);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_normalized_vector_has_unit_norm_even_with_tiny_or_huge_components() {
        for scale in [1e-23_f32, 1.0, 1e20] {
            let mut v = vec![3.0 * scale, 4.0 * scale];
            normalize(&mut v);
            assert!((norm(&v) - 1.0).abs() < 1e-6, "scale {scale}: {v:?}");
            assert!((v[0] - 0.6).abs() < 1e-6 && (v[1] - 0.8).abs() < 1e-6, "scale {scale}: {v:?}");
        }
    }

    #[test]
    fn a_zero_vector_is_left_as_it_is() {
        let mut v = vec![0.0_f32; 4];
        normalize(&mut v);
        assert_eq!(v, [0.0; 4]);
    }
}
