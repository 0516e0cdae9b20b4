from concurrent.futures import ProcessPoolExecutor

from threadpoolctl import threadpool_info

from autojoint.preprocessing.preprocess import limit_blas_threads


def _blas_threads() -> list[int]:
    return [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]


def test_a_preprocessing_worker_runs_its_blas_on_the_threads_it_is_given() -> None:
    with ProcessPoolExecutor(1, initializer=limit_blas_threads, initargs=(1,)) as pool:
        threads = pool.submit(_blas_threads).result()
    assert threads and set(threads) == {1}
