# Runs the command after "--" and checks its exit status and output (stdout and stderr together).
# ctest's PASS_REGULAR_EXPRESSION ignores the exit status and WILL_FAIL accepts any non-zero one,
# so neither alone can tell a usage error (2) from a failure (1).
#   cmake -DEXPECT_EXIT=N -DEXPECT_REGEX=RE -P check_cli.cmake -- COMMAND ARGS...
set(cmd)
set(after_dashes FALSE)
math(EXPR last "${CMAKE_ARGC} - 1")
foreach(i RANGE ${last})
  if(after_dashes)
    list(APPEND cmd "${CMAKE_ARGV${i}}")
  elseif(CMAKE_ARGV${i} STREQUAL "--")
    set(after_dashes TRUE)
  endif()
endforeach()
if(NOT cmd)
  message(FATAL_ERROR "check_cli.cmake: no command after --")
endif()
execute_process(COMMAND ${cmd} RESULT_VARIABLE status OUTPUT_VARIABLE out ERROR_VARIABLE err)
string(REPLACE ";" " " shown "${cmd}")
if(NOT status STREQUAL "${EXPECT_EXIT}")
  message(FATAL_ERROR "${shown}\nexit status ${status}, expected ${EXPECT_EXIT}\n"
                      "stdout:\n${out}\nstderr:\n${err}")
endif()
if(DEFINED EXPECT_REGEX AND NOT "${out}${err}" MATCHES "${EXPECT_REGEX}")
  message(FATAL_ERROR "${shown}\noutput does not match: ${EXPECT_REGEX}\n"
                      "stdout:\n${out}\nstderr:\n${err}")
endif()
message(STATUS "${shown}: exit status ${status} as expected")
