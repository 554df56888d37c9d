/* host_main.c - host entry point of the C tests (the M4 uses tflm_ops/m4/test_main.c). */
int edgeplus_run_tests(void);

int main(void)
{
    return edgeplus_run_tests() == 0 ? 0 : 1;
}
