// The admission rule at the door (stages/admission.h).
#include "stages/admission.h"

#include <gtest/gtest.h>

namespace quizflow::stages {
namespace {

TEST(Admission, EstimateIsOneEventPer64BytesAndAtLeastOne) {
  EXPECT_EQ(admission_estimate(0), 1);
  EXPECT_EQ(admission_estimate(63), 1);
  EXPECT_EQ(admission_estimate(64), 1);
  EXPECT_EQ(admission_estimate(128), 2);
  EXPECT_EQ(admission_estimate(1 << 20), 16384);
}

TEST(Admission, AdmitsWhatFitsUnderTheBudget) {
  EXPECT_TRUE(admits(0, 10, 100));
  EXPECT_TRUE(admits(90, 10, 100));   // exactly full
  EXPECT_FALSE(admits(91, 10, 100));  // one over
  EXPECT_FALSE(admits(100, 1, 100));
}

TEST(Admission, ARequestLargerThanTheBudgetPassesAloneOnly) {
  EXPECT_TRUE(admits(0, 5000, 100));
  EXPECT_FALSE(admits(1, 5000, 100));
}

}  // namespace
}  // namespace quizflow::stages
