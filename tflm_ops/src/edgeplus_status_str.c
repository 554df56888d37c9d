/* edgeplus_status_str: printable name of a status. */
#include "edgeplus_internal.h"

const char *edgeplus_status_str(edgeplus_status status)
{
    switch (status) {
    case EDGEPLUS_OK:
        return "EDGEPLUS_OK";
    case EDGEPLUS_ERR_NULL:
        return "EDGEPLUS_ERR_NULL";
    case EDGEPLUS_ERR_DIMS:
        return "EDGEPLUS_ERR_DIMS";
    case EDGEPLUS_ERR_BITS:
        return "EDGEPLUS_ERR_BITS";
    case EDGEPLUS_ERR_WINDOW:
        return "EDGEPLUS_ERR_WINDOW";
    case EDGEPLUS_ERR_SCRATCH:
        return "EDGEPLUS_ERR_SCRATCH";
    case EDGEPLUS_ERR_ARG:
        return "EDGEPLUS_ERR_ARG";
    case EDGEPLUS_ERR_COVERAGE:
        return "EDGEPLUS_ERR_COVERAGE";
    case EDGEPLUS_ERR_OVERLAP:
        return "EDGEPLUS_ERR_OVERLAP";
    default:
        return "EDGEPLUS_ERR_UNKNOWN";
    }
}
