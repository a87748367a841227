package dev.profileengine.glue;

import static org.junit.jupiter.api.Assertions.assertEquals;

import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

class QuietBuildTestSummaryTest {
  @ParameterizedTest
  @CsvSource(delimiter = '|', value = {
      "-q -B package|true",
      "-B -q package|true",
      "--quiet package|true",
      "-qB package|true",
      "-B package|false",
      "-B package -Dquiet=1|false",
      "-B -Dq package|false",
      "'  '|false"})
  void quietIsReadFromMavensCommandLine(String args, boolean quiet) {
    assertEquals(quiet, QuietBuildTestSummary.isQuiet(args));
  }
}
