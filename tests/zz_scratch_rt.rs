use igpt_onnx::runtime::{self, RuntimeKind, RuntimeOptions};
use ort::ep;
#[test]
fn probe() {
    let _rt = runtime::open(RuntimeKind::OrtCpu, &RuntimeOptions::default()).unwrap();
    let env = ort::environment::Environment::current().unwrap();
    let b = ort::session::Session::builder(&env).unwrap();
    match b.with_execution_providers([ep::CUDA::default().build().error_on_failure()]) {
        Ok(_) => println!("CUDA registered"),
        Err(e) => println!("CUDA error: {e}"),
    }
    let b = ort::session::Session::builder(&env).unwrap();
    match b.with_execution_providers([ep::TensorRT::default().build().error_on_failure()]) {
        Ok(_) => println!("TRT registered"),
        Err(e) => println!("TRT error: {e}"),
    }
    let b = ort::session::Session::builder(&env).unwrap();
    match b.with_execution_providers([ep::CUDA::default().build()]) {
        Ok(_) => println!("CUDA silent: registered (ok)"),
        Err(e) => println!("CUDA silent error: {e}"),
    }
}
