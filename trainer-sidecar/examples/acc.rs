use trainer_sidecar::accountants::*;
fn main() {
    for acc in [Accountant::Rdp, Accountant::Prv] {
        let t0 = std::time::Instant::now();
        println!(
            "{:?} {:?} {:?}",
            acc,
            noise_multiplier(acc, 8.0, 0.04, 2250, 1e-5),
            t0.elapsed()
        );
    }
    let t0 = std::time::Instant::now();
    let m = SubsampledGaussian::new(0.001, 0.8).unwrap();
    println!(
        "{:?} {:?}",
        prv::epsilon(m, 100000, 1e-5, prv::PrvOptions::default()),
        t0.elapsed()
    );
    let m = SubsampledGaussian::new(1.0, 0.5).unwrap();
    println!("{:?}", epsilon(Accountant::Prv, m, 100000, 1e-5));
    println!("{:?}", epsilon(Accountant::Rdp, m, 100000, 1e-5));
    println!("{:?}", epsilon(Accountant::Gdp, m, 100000, 1e-5));
}
